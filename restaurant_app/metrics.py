"""The worker's Prometheus metrics: ours and Faust's sensor share ``registry``, served at ``GET /metrics``.

Every label has a fixed, small set of values: a rejection's ``kind`` (its class of error, never
its free-text reason), a report run's ``status``, and the topic and partition of the consumer lag.
"""

from __future__ import annotations

import collections
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from restaurant_app.order_sink import RejectionKind
from spark_reports.result import RunStatus

# Without this, every counter and histogram gets a *_created series; they only add noise here.
disable_created_metrics()

registry = CollectorRegistry()
# process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ...: read at each scrape.
ProcessCollector(registry=registry)

FINISHED_STATUSES = tuple(status for status in RunStatus if status is not RunStatus.RUNNING)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)
REPORT_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)

orders_stored = Counter(
    "restaurant_orders_stored", "Orders stored in PostgreSQL; a redelivered order is not counted again.",
    registry=registry,
)
order_events_stored = Counter(
    "restaurant_order_events_stored",
    "Cancellations and refunds stored in PostgreSQL; one sent again is not counted again.",
    registry=registry,
)
offsets_out_of_range = Counter(
    "restaurant_kafka_offsets_out_of_range",
    "Times Kafka no longer held the offset the worker was to read next (deleted by retention, or"
    " truncated): orders there may be lost; see /health.",
    ["topic"], registry=registry,
)
rejections = Counter(
    "restaurant_rejections",
    "Messages rejected, by class of error: InvalidOrder (not a valid order), ConflictingDuplicate"
    " (another order under a stored order_id), RefusedByDatabase (PostgreSQL refused the row),"
    " UnreadableRecord (Kafka's record itself could not be decoded), UnknownOrder (a cancellation or"
    " refund of an order not stored), EventRefused (a cancellation or refund its order does not allow).",
    ["kind"], registry=registry,
)
batch_messages = Histogram(
    "restaurant_batch_messages", "Messages in each batch the persistence agent stored.",
    buckets=BATCH_SIZE_BUCKETS, registry=registry,
)
batch_store_seconds = Histogram(
    "restaurant_batch_store_seconds",
    "Seconds to store a batch and dead-letter its rejections, waiting out any database outage.",
    buckets=LATENCY_BUCKETS, registry=registry,
)
produce_to_commit_seconds = Histogram(
    "restaurant_produce_to_commit_seconds",
    "Seconds from each message's Kafka timestamp to the commit of the transaction that stored it"
    " (or its rejection).",
    buckets=LATENCY_BUCKETS, registry=registry,
)
report_runs = Counter(
    "restaurant_report_runs",
    "Report job runs, by how they ended: succeeded, failed, skipped (another run held the lock)"
    " or killed (it ran past REPORT_TIMEOUT_SECONDS).",
    ["status"], registry=registry,
)
report_duration_seconds = Histogram(
    "restaurant_report_duration_seconds", "Seconds each report job run took, from launch to exit.",
    buckets=REPORT_BUCKETS, registry=registry,
)
report_freshness_seconds = Gauge(
    "restaurant_report_freshness_seconds",
    "Seconds from the end of the last whole minute before the latest successful report run"
    " started to the moment that run finished: how late that minute's report was ready.",
    registry=registry,
)
report_last_success_seconds = Gauge(
    "restaurant_report_last_success_timestamp_seconds",
    "When the latest successful report run finished, in Unix seconds; 0 if none since the worker started.",
    registry=registry,
)

for _kind in RejectionKind:
    rejections.labels(kind=_kind)
for _status in FINISHED_STATUSES:
    report_runs.labels(status=_status)


def batch_committed(produced_at: Iterable[float], new_orders: int, rejection_kinds: Iterable[RejectionKind],
                    committed_at: float, new_events: int = 0) -> None:
    """Count what a batch's transactions stored, and time each message from its Kafka timestamp."""
    orders_stored.inc(new_orders)
    order_events_stored.inc(new_events)
    for kind, count in collections.Counter(rejection_kinds).items():
        rejections.labels(kind=kind).inc(count)
    observe_all(produce_to_commit_seconds, [max(committed_at - timestamp, 0.0) for timestamp in produced_at])


def observe_all(histogram: Histogram, values: Iterable[float]) -> None:
    """``histogram.observe`` of each value, with one update per bucket rather than per value.

    It adds to prometheus_client's own fields of an unlabelled ``Histogram`` (its bounds, buckets
    and sum, as 0.26's ``observe`` does); the metrics tests check it against ``observe``.
    """
    ordered = sorted(values)
    below = 0
    for bucket, bound in zip(histogram._buckets, histogram._upper_bounds, strict=True):
        upto = bisect_right(ordered, bound)  # the values at most ``bound``: this bucket's and those before
        if upto > below:
            bucket.inc(upto - below)
        below = upto
    histogram._sum.inc(sum(ordered))


def batch_handled(messages: int, seconds: float) -> None:
    batch_messages.observe(messages)
    batch_store_seconds.observe(seconds)


def freshness(started_at: float, finished_at: float) -> float:
    """Seconds from the end of the last whole minute before ``started_at`` to ``finished_at`` (Unix times)."""
    return finished_at - started_at // 60 * 60


def report_finished(status: RunStatus, seconds: float, started_at: float, finished_at: float) -> None:
    """Count a report run; a successful one also sets the freshness and the time of the last success."""
    report_runs.labels(status=status).inc()
    report_duration_seconds.observe(seconds)
    if status == RunStatus.SUCCEEDED:
        report_freshness_seconds.set(freshness(started_at, finished_at))
        report_last_success_seconds.set(finished_at)


class ConsumerLagCollector(Collector):
    """``restaurant_consumer_lag_messages`` per partition, read at each scrape from ``read_lag``.

    ``read_lag`` returns what ``restaurant_app.web.lag.consumer_lag`` does; a partition whose lag
    is not known yet has no sample.
    """

    def __init__(self, read_lag: Callable[[], Mapping[str, Any]]) -> None:
        self.read_lag = read_lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = self.read_lag()
        family = GaugeMetricFamily(
            "restaurant_consumer_lag_messages",
            "Messages on the orders topic not yet committed by this worker, per partition it reads:"
            " Kafka's high-water mark less the committed offset.",
            labels=["topic", "partition"],
        )
        for row in lag["partitions"]:
            if row["lag"] is not None:
                family.add_metric([lag["topic"], str(row["partition"])], row["lag"])
        yield family


class ReplicaLagCollector(Collector):
    """The read replica's lag (``REPORTS_DATABASE_URL``), from the status ``/health`` shows.

    ``status`` is set before each scrape (``replica_status``'s answer); None, without a replica,
    yields nothing. A replica that could not be asked has ``restaurant_replica_up`` 0 and no lag.
    """

    def __init__(self) -> None:
        self.status: Mapping[str, Any] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.status
        if status is None:
            return
        yield GaugeMetricFamily(
            "restaurant_replica_up",
            "1 when the read replica and the primary answered the lag query at this scrape, else 0.",
            value=1.0 if status["ok"] else 0.0)
        if not status["ok"] or status.get("bytes_behind") is None:
            return
        yield GaugeMetricFamily(
            "restaurant_replica_lag_bytes",
            "Bytes of the primary's WAL the read replica has not replayed yet.",
            value=status["bytes_behind"])
        yield GaugeMetricFamily(
            "restaurant_replica_lag_seconds",
            "While the read replica is behind, the age of the last transaction it replayed; 0 once"
            " it has replayed everything.",
            value=status["lag_seconds"] or 0.0)
