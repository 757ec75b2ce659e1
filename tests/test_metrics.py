"""``GET /metrics``: our metrics and Faust's sensor, in a real run and through their helpers."""

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from faust.types import Message
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import agents.persistence
from agents.persistence import persist_orders
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app import metrics
from restaurant_app.fast_consumer import MessageBatch
from restaurant_app.lean_monitor import faust_metrics, lean_monitor
from restaurant_app.metrics import ConsumerLagCollector, ReplicaLagCollector, registry
from restaurant_app.models import Order
from restaurant_app.order_sink import InMemoryOrderSink, RejectionKind
from restaurant_app.report_runner import ReportRunner
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import OrderGenerator
from tests.services import produce, query, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def value(name: str, **labels: str) -> float:
    """A sample of this process's registry; 0 where it has none yet."""
    return registry.get_sample_value(name, labels) or 0.0


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by its name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str) -> tuple[str, Samples]:
    """GET /metrics: its content type and its samples."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return response.headers["Content-Type"], parse(response.read().decode())


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_a_committed_batch_counts_its_orders_rejections_and_latencies():
    before = {name: value(name) for name in ("restaurant_orders_stored_total",
                                            "restaurant_produce_to_commit_seconds_count",
                                            "restaurant_produce_to_commit_seconds_sum")}
    invalid = value("restaurant_rejections_total", kind="InvalidOrder")
    metrics.batch_committed([100.0, 101.5, 103.0], 2, ["InvalidOrder"], committed_at=102.0)
    assert value("restaurant_orders_stored_total") == before["restaurant_orders_stored_total"] + 2
    assert value("restaurant_rejections_total", kind="InvalidOrder") == invalid + 1
    assert value("restaurant_produce_to_commit_seconds_count") == (
        before["restaurant_produce_to_commit_seconds_count"] + 3)
    # a message stamped after the commit (clocks apart) counts as 0 s, never as negative
    assert value("restaurant_produce_to_commit_seconds_sum") == pytest.approx(
        before["restaurant_produce_to_commit_seconds_sum"] + 2.0 + 0.5 + 0.0)


def histogram_samples(histogram: Histogram) -> dict[str, float]:
    return {f"{s.name}{s.labels}": s.value for family in histogram.collect() for s in family.samples}


@given(st.lists(st.one_of(st.sampled_from(metrics.LATENCY_BUCKETS),
                          st.floats(min_value=0.0, max_value=1000.0)), max_size=50))
def test_observing_a_batch_at_once_counts_what_observing_each_value_does(values: list[float]):
    one_by_one, at_once = (Histogram("latency", "", buckets=metrics.LATENCY_BUCKETS, registry=None)
                           for _ in range(2))
    for value in [0.3, 7.0]:  # what earlier batches left, so that the batch adds to it
        one_by_one.observe(value)
        at_once.observe(value)
    for value in values:
        one_by_one.observe(value)
    metrics.observe_all(at_once, values)
    expected, got = histogram_samples(one_by_one), histogram_samples(at_once)
    sum_name = next(name for name in expected if name.startswith("latency_sum"))
    assert got.pop(sum_name) == pytest.approx(expected.pop(sum_name))
    assert got == expected  # each bucket (a bound's value itself included), the count


def test_every_rejection_kind_and_report_status_is_shown_from_the_start():
    for kind in RejectionKind:
        assert registry.get_sample_value("restaurant_rejections_total", {"kind": kind}) is not None
    for status in metrics.FINISHED_STATUSES:
        assert registry.get_sample_value("restaurant_report_runs_total", {"status": status}) is not None


WHOLE_MINUTE = 1_749_999_960.0
"""A Unix time at the start of a minute."""


def test_freshness_counts_from_the_end_of_the_minute_before_the_run_started():
    assert metrics.freshness(WHOLE_MINUTE + 25, WHOLE_MINUTE + 65) == 65
    assert metrics.freshness(WHOLE_MINUTE, WHOLE_MINUTE + 30) == 30


def test_a_failed_report_run_leaves_freshness_and_last_success_alone():
    metrics.report_finished("succeeded", 20.0, started_at=WHOLE_MINUTE + 10, finished_at=WHOLE_MINUTE + 30)
    failed = value("restaurant_report_runs_total", status="failed")
    metrics.report_finished("failed", 3.0, started_at=WHOLE_MINUTE + 100, finished_at=WHOLE_MINUTE + 103)
    assert value("restaurant_report_runs_total", status="failed") == failed + 1
    assert value("restaurant_report_freshness_seconds") == 30
    assert value("restaurant_report_last_success_timestamp_seconds") == WHOLE_MINUTE + 30


def test_consumer_lag_has_a_sample_per_partition_whose_lag_is_known():
    lag = {"topic": "orders", "total": None, "partitions": [
        {"partition": 0, "highwater": 10, "committed": 7, "lag": 3},
        {"partition": 1, "highwater": None, "committed": None, "lag": None},
        {"partition": 2, "highwater": 0, "committed": 0, "lag": 0},
    ]}
    [family] = ConsumerLagCollector(lambda: lag).collect()
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"topic": "orders", "partition": "0"}, 3), ({"topic": "orders", "partition": "2"}, 0)]


def test_the_replicas_lag_is_shown_only_with_a_replica_and_only_when_known():
    collector = ReplicaLagCollector()
    assert list(collector.collect()) == []
    collector.status = {"ok": True, "in_recovery": True, "bytes_behind": 4096, "lag_seconds": 2.5}
    assert {f.name: f.samples[0].value for f in collector.collect()} == {
        "restaurant_replica_up": 1, "restaurant_replica_lag_bytes": 4096,
        "restaurant_replica_lag_seconds": 2.5}
    collector.status = {"ok": False, "error": "the replica or the primary is unreachable"}
    assert {f.name: f.samples[0].value for f in collector.collect()} == {"restaurant_replica_up": 0}


def test_faust_latencies_observed_in_milliseconds_are_shown_in_seconds():
    faust_registry = CollectorRegistry()
    faust_metrics(faust_registry).consumer_commit_latency.observe(250.0)
    assert faust_registry.get_sample_value("faust_consumer_commit_seconds_sum") == 0.25
    assert faust_registry.get_sample_value("faust_consumer_commit_seconds_bucket", {"le": "0.25"}) == 1
    assert faust_registry.get_sample_value("faust_consumer_commit_seconds_bucket", {"le": "0.1"}) == 0


def test_a_batch_of_messages_counts_as_its_messages_in_faust_metrics():
    registry = CollectorRegistry()
    monitor = lean_monitor(registry)
    messages = [Message("orders", 2, offset, 0.0, 0, None, None, b"{}", None) for offset in range(10, 13)]
    batch, single = MessageBatch(messages, 6), Message("orders", 2, 13, 0.0, 0, None, None, b"{}", None)
    for message in (batch, single):
        monitor.on_message_in(message.tp, message.offset, message)
    assert monitor.messages_active == 4
    monitor.on_message_out(batch.tp, batch.offset, batch)
    assert monitor.messages_active == 1
    monitor.publish()
    assert registry.get_sample_value("faust_messages_received_total") == 4
    assert registry.get_sample_value("faust_topic_messages_received_total", {"topic": "orders"}) == 4
    partition = {"topic": "orders", "partition": "2"}
    assert registry.get_sample_value("faust_topic_partition_read_offset", partition) == 13


def test_the_partitions_end_offset_is_recorded_per_message_and_shown_at_the_scrape():
    registry = CollectorRegistry()
    monitor = lean_monitor(registry)
    tp = Message("orders", 1, 0, 0.0, 0, None, None, b"", None).tp
    for end in (5, 9):
        monitor.track_tp_end_offset(tp, end)
    gauge = monitor._metrics.topic_partition_end_offset
    assert [metric.samples for metric in gauge.collect()] == [[]]  # nothing per message
    partition = {"topic": "orders", "partition": "1"}
    assert registry.get_sample_value("faust_topic_partition_end_offset", partition) == 9  # a scrape


def exposed_families() -> dict[str, str]:
    """Each metric family the worker's registry exposes, by name (counters with ``_total``): its type."""
    import restaurant_app.worker  # noqa: F401  (registers Faust's sensor)
    text = generate_latest(registry).decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def test_metric_names_follow_prometheus_conventions():
    families = exposed_families()
    assert {name.split("_")[0] for name in families} == {"restaurant", "faust", "process"}
    assert [n for n, kind in families.items() if (kind == "counter") != n.endswith("_total")] == []
    assert [n for n in families if re.search(r"_(total|ms|latency)_|_ms$|latency|^[a-z]+_total_", n)] == []
    assert "faust_consumer_commit_seconds" in families and "restaurant_orders_stored_total" in families


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The persistence agent stores in memory and publishes its dead letters nowhere."""

    async def publish(rejections: list) -> None:
        return None

    monkeypatch.setattr(agents.persistence, "sink", InMemoryOrderSink())
    monkeypatch.setattr(agents.persistence.dead_letters, "publish", publish)


@pytest.mark.usefixtures("in_memory")
async def test_the_persistence_agent_counts_each_batch():
    stored, invalid = value("restaurant_orders_stored_total"), value(
        "restaurant_rejections_total", kind="InvalidOrder")
    batches, messages = value("restaurant_batch_messages_count"), value("restaurant_batch_messages_sum")
    generator = OrderGenerator(seed=4)
    async with persist_orders.test_context() as agent:
        for raw in [generator.order().dumps(), b"not json", generator.order().dumps()]:
            await agent.put(raw)
        await eventually(lambda: value("restaurant_batch_messages_sum") == messages + 3)
    assert value("restaurant_orders_stored_total") == stored + 2
    assert value("restaurant_rejections_total", kind="InvalidOrder") == invalid + 1
    assert value("restaurant_batch_messages_count") > batches
    assert value("restaurant_batch_store_seconds_count") >= value("restaurant_batch_messages_count")


def delivered(value: bytes, offset: int, produced_at: float) -> SimpleNamespace:
    """A Kafka message as the agent handles it, at partition 0 of topic "orders"."""
    return SimpleNamespace(topic="orders", partition=0, offset=offset, value=value, key=None,
                           headers=(), timestamp=produced_at)


@pytest.mark.usefixtures("in_memory")
async def test_a_redelivered_batch_is_not_counted_twice():
    stored, invalid = value("restaurant_orders_stored_total"), value(
        "restaurant_rejections_total", kind="InvalidOrder")
    batch = [delivered(OrderGenerator(seed=6).order().dumps(), 0, time.time()),
             delivered(b"not json", 1, time.time())]
    await agents.persistence.handle(batch, await agents.persistence.validated(batch))
    # as Kafka delivers it again after a crash
    await agents.persistence.handle(batch, await agents.persistence.validated(batch))
    assert value("restaurant_orders_stored_total") == stored + 1
    assert value("restaurant_rejections_total", kind="InvalidOrder") == invalid + 1


SUCCEEDS = ("from spark_reports.result import JobResult, result_line;"
            " print(result_line(JobResult('succeeded', run_id=1, windows=2)))")


async def test_the_report_runner_counts_each_run_by_outcome():
    succeeded, failed = (value("restaurant_report_runs_total", status=s) for s in ("succeeded", "failed"))
    runs = value("restaurant_report_duration_seconds_count")
    await ReportRunner([sys.executable, "-c", SUCCEEDS], timeout=30).run()
    await ReportRunner([sys.executable, "-c", "raise SystemExit(2)"], timeout=30).run()
    assert value("restaurant_report_runs_total", status="succeeded") == succeeded + 1
    assert value("restaurant_report_runs_total", status="failed") == failed + 1
    assert value("restaurant_report_duration_seconds_count") == runs + 2
    assert 0 < value("restaurant_report_freshness_seconds") < 90


def messages_for_the_run() -> tuple[list[Order], list[bytes], bytes]:
    """Good orders, invalid messages, and another order under the first good one's id."""
    generator = OrderGenerator(seed=21)
    good = [generator.order() for _ in range(12)]
    invalid = [b"{broken", b'{"order_id": "1"}', b"\x00\x01binary"]
    conflicting = {**json.loads(good[0].dumps()), "customer_name": "Someone Else"}
    return good, invalid, json.dumps(conflicting).encode()


def eventually_scraped(url: str, condition: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``condition`` holds (the counters follow the commit by a moment)."""

    def scraped() -> Samples | None:
        samples = scrape(url)[1]
        return samples if condition(samples) else None

    return wait_until(scraped, timeout=30, message="the metrics never showed what was expected")


@pytest.mark.integration
def test_metrics_count_what_a_real_run_stored_and_rejected(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    good, invalid, conflicting = messages_for_the_run()
    worker.start()
    topic = worker.env["ORDERS_TOPIC"]
    produce(stack.kafka.bootstrap_servers, topic,
            [(None, o.dumps()) for o in good] + [(None, raw) for raw in invalid])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders") == [(len(good),)])
    produce(stack.kafka.bootstrap_servers, topic, [(None, conflicting)])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM rejected_orders") == [(len(invalid) + 1,)])

    everything = len(good) + len(invalid) + 1
    samples = eventually_scraped(worker.url, lambda s: sample(
        s, "restaurant_batch_messages_sum") == everything)
    assert sample(samples, "restaurant_orders_stored_total") == len(good)
    assert sample(samples, "restaurant_rejections_total", kind="InvalidOrder") == len(invalid)
    assert sample(samples, "restaurant_rejections_total", kind="ConflictingDuplicate") == 1
    assert sample(samples, "restaurant_rejections_total", kind="RefusedByDatabase") == 0
    assert sample(samples, "restaurant_produce_to_commit_seconds_count") == everything
    assert 0 < sample(samples, "restaurant_produce_to_commit_seconds_sum") < everything * 30
    assert sample(samples, "restaurant_batch_store_seconds_count") == sample(
        samples, "restaurant_batch_messages_count")
    assert sample(samples, "restaurant_report_runs_total", status="succeeded") == 0
    assert sample(samples, "faust_messages_received_total") >= everything
    assert sample(samples, "faust_topic_messages_received_total", topic=topic) == everything

    lag = eventually_scraped(worker.url, lambda s: all(
        sample(s, "restaurant_consumer_lag_messages", topic=topic, partition=p) == 0 for p in "01"))
    assert {labels for name, labels in lag if name == "restaurant_consumer_lag_messages"} == {
        frozenset({("topic", topic), ("partition", p)}) for p in "01"}
    content_type, _ = scrape(worker.url)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert_promtool_accepts(exposition(worker.url))


PROMTOOL = PROJECT_ROOT / ".stack" / "bin" / "promtool"


def exposition(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return response.read().decode()


def assert_promtool_accepts(text: str) -> None:
    """``promtool check metrics``: Prometheus' own lint of names, units, types and help."""
    assert PROMTOOL.exists(), "promtool is missing: `make rules` builds it into .stack/bin"
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
