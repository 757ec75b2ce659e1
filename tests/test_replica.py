"""A streaming read replica, as ``make run`` starts it with POSTGRES_REPLICA=1, and what reads from it.

The report job reads orders from the replica (REPORTS_DATABASE_URL) and gives the same reports
as from the primary; it waits for the replica to replay what it just wrote, and fails in plain
words when the replica does not. A worker answers /reports from the replica, even with the
primary down, and shows the replica's lag in /health and /metrics.
"""

import asyncio
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.postgres import PostgresServer
from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import DATABASE_NAME, free_port, local_stack
from restaurant_app.database import Database
from restaurant_app.settings import Settings
from restaurant_app.traffic import OrderGenerator
from spark_reports import job
from tests.conftest import service_home
from tests.services import get, query, unique_names, wait_until
from tests.test_grafana import dashboard, metric_names, queries, series_names
from tests.test_reports_job import save, snapshot, without_computed_at

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
"""11:00 in São Paulo: two hours of orders from here on."""
LATE = START + timedelta(minutes=30, seconds=20)
"""A minute the first run reported, which late orders change."""


@dataclass
class Replicated:
    """make run's PostgreSQL and its replica, with two databases of the same orders."""

    home: Path
    primary: PostgresServer
    primary_url: str
    replica_url: str
    """The replica as make run gives it to the workers: the read-only role ``restaurant_web``."""
    compared_url: str
    """A database whose reports are computed on the primary alone, to compare with."""
    replica_admin_url: str
    """The replica as the superuser, who may pause its replay."""


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    home = service_home()
    port, replica_port = free_port(), free_port()
    try:
        with ExitStack() as services:
            with pytest.MonkeyPatch.context() as env:  # only while the stack starts
                env.delenv("DATABASE_URL", raising=False)
                env.setenv("KAFKA_BROKER", "127.0.0.1:9")  # any: this stack starts no Kafka
                env.setenv("SPARK_REMOTE", "sc://127.0.0.1:9")  # nor a Spark Connect server
                env.setenv("POSTGRES_REPLICA", "true")  # any spelling of on
                urls = services.enter_context(local_stack(
                    home, Settings.from_env(), postgres_port=port, replica_port=replica_port))
            primary = PostgresServer(home / "postgres", port)
            primary.create_database("compared")
            yield Replicated(home, primary, urls["DATABASE_URL"], urls["REPORTS_DATABASE_URL"],
                             primary.url("compared"),
                             primary.url(DATABASE_NAME).replace(f":{port}/", f":{replica_port}/"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_make_run_starts_a_hot_standby_streaming_from_its_slot(replicated: Replicated):
    assert replicated.replica_url.endswith(f"/{DATABASE_NAME}")
    assert query(replicated.replica_url, "SELECT pg_is_in_recovery()") == [(True,)]
    assert query(replicated.primary_url, "SELECT slot_name, active FROM pg_replication_slots") == [
        ("reports_replica", True)]
    assert query(replicated.primary_url, "SELECT usename, state FROM pg_stat_replication") == [
        ("restaurant_replication", "streaming")]  # a role that may replicate and nothing else
    with psycopg.connect(replicated.primary_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE replicated_here (n integer)")
        conn.execute("INSERT INTO replicated_here VALUES (42)")
    wait_until(lambda: tables_on_replica(replicated) and query(
        replicated.replica_url, "SELECT n FROM replicated_here") == [(42,)], timeout=30)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        query(replicated.replica_url, "INSERT INTO replicated_here VALUES (43) RETURNING n")


def tables_on_replica(replicated: Replicated) -> bool:
    return bool(query(replicated.replica_url, "SELECT 1 FROM pg_tables WHERE tablename = 'replicated_here'"))


def two_hours() -> list:
    generator = OrderGenerator(seed=12, timezone_name="America/Sao_Paulo")
    return [order for step in range(0, 2 * 3600, 45)
            for order in generator.orders_for_tick(1, START + timedelta(seconds=step))]


def late_orders() -> list:
    generator = OrderGenerator(seed=13, timezone_name="America/Sao_Paulo")
    return [generator.order(LATE + timedelta(seconds=n)) for n in range(3)]


def run_job(url: str, reports_url: str = "") -> dict:
    """One run of the report job in this process (one warm JVM), reading from ``reports_url`` if given."""
    settings = replace(Settings.from_env(), database_url=url, reports_database_url=reports_url,
                       spark_driver_memory="512m")
    return asdict(job.run(settings))


def report_scans(url: str) -> int:
    """How many times report_scope was scanned on this server (its statistics are its own)."""
    return query(url, "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables"
                      " WHERE relname = 'report_scope'")[0][0]


def reports(url: str) -> dict[str, list[tuple]]:
    """The report tables' rows, without the columns that say when, not what: ``computed_at``, and of
    ``corrected_at`` only whether the window was corrected."""
    tables = without_computed_at(snapshot(url), url)
    with psycopg.connect(url) as conn:
        names = [c.name for c in conn.execute("SELECT * FROM report_sales LIMIT 0").description]
    kept = [n for n in names if n not in ("computed_at", "store_id")] + ["store_id"] * ("store_id" in names)
    if "corrected_at" in kept:  # as without_computed_at orders the columns
        at = kept.index("corrected_at")
        tables["report_sales"] = [(*row[:at], row[at] is not None, *row[at + 1:])
                                  for row in tables["report_sales"]]
    return tables


@dataclass
class Runs:
    first: dict
    first_compared: dict
    late: dict
    late_compared: dict
    scans_before: int
    scans_after: int


@pytest.fixture(scope="module")
def runs(replicated: Replicated) -> Runs:
    """The same orders in both databases; the job run on each, reading one from the replica."""
    history, late = two_hours(), late_orders()  # order ids are new on every call
    for url in (replicated.primary_url, replicated.compared_url):
        asyncio.run(Database(url).migrate())
        save(url, history)
    scans_before = report_scans(replicated.replica_url)
    first = run_job(replicated.primary_url, replicated.replica_url)
    first_compared = run_job(replicated.compared_url)
    # Stored on the primary right before the run: the run must wait until the replica has them.
    for url in (replicated.primary_url, replicated.compared_url):
        save(url, late)
    late = run_job(replicated.primary_url, replicated.replica_url)
    late_compared = run_job(replicated.compared_url)
    scans_after = wait_until(lambda: report_scans(replicated.replica_url) > scans_before
                             and report_scans(replicated.replica_url), timeout=15,
                             message=f"nothing read report_scope on the replica; the runs: {first}, {late}")
    return Runs(first, first_compared, late, late_compared, scans_before, scans_after)


def test_reports_from_the_replica_equal_those_from_the_primary(replicated: Replicated, runs: Runs):
    for result in (runs.first, runs.first_compared, runs.late, runs.late_compared):
        assert result["status"] == "succeeded", result["error"]
    assert runs.first["orders_read"] == runs.first_compared["orders_read"] == len(two_hours())
    assert runs.late["orders_read"] == runs.late_compared["orders_read"] > len(late_orders())
    assert runs.late["windows"] == runs.late_compared["windows"]
    assert reports(replicated.primary_url) == reports(replicated.compared_url)
    assert reports(replicated.primary_url)["report_sales"], "no reports were written"


def test_spark_read_the_replica(runs: Runs):
    """Spark's queries join report_scope; on the replica, nothing else reads it."""
    assert runs.scans_after > runs.scans_before


def test_a_replica_that_does_not_catch_up_fails_the_run_in_plain_words(
    replicated: Replicated, runs: Runs, monkeypatch: pytest.MonkeyPatch
):
    before = reports(replicated.primary_url)
    monkeypatch.setattr(job, "REPLICA_WAIT_SECONDS", 2.0)
    with psycopg.connect(replicated.replica_admin_url, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            save(replicated.primary_url, late_orders()[:1])
            result = run_job(replicated.primary_url, replicated.replica_url)
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    assert result["status"] == "failed"
    assert "has not replayed the primary's WAL" in result["error"]
    # PostgreSQL published the run's closed minute, with the late order, before Spark waited for
    # the replica; every other report is as it was.
    after = reports(replicated.primary_url)
    assert beyond_minutes(after) == beyond_minutes(before) and after != before


def beyond_minutes(tables: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The rows of every report table but the minutes of report_sales and report_dishes."""
    minutes_of = ("report_sales", "report_dishes")
    return {table: [row for row in rows if table not in minutes_of or row[0] != "minute"]
            for table, rows in tables.items()}


@pytest.fixture(scope="module")
def replica_worker(stack: ScratchStack, replicated: Replicated, runs: Runs) -> Iterator[WorkerProcess]:
    """A worker on the primary whose /reports read the replica; its report timer stays quiet."""
    worker = WorkerProcess({
        **unique_names(),
        "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": replicated.primary_url,
        "REPORTS_DATABASE_URL": replicated.replica_url,
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600",
        "TOPIC_PARTITIONS": "1",
        "DATA_DIR": str(replicated.home / "worker"),
    }, replicated.home / "worker.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def hour_reports(worker: WorkerProcess) -> tuple[int, dict]:
    return get(f"{worker.url}/reports?granularity=hour&from=2026-11-20T14:00:00Z&to=2026-11-20T16:00:00Z")


def test_the_worker_made_the_day_partitions_at_start_up(
    replica_worker: WorkerProcess, replicated: Replicated
):
    today = datetime.now(UTC).date()
    names = {f"orders_p{today:%Y%m%d}", f"orders_p{today + timedelta(days=7):%Y%m%d}", "orders_p20261120"}
    wait_until(lambda: names <= {row[0] for row in query(
        replicated.primary_url, "SELECT relname FROM pg_class WHERE relname LIKE %s", ("orders_p%",))},
        timeout=30, message="the worker did not create the day partitions")
    assert query(replicated.primary_url, "SELECT count(*) FROM orders_default") == [(0,)]


def test_health_shows_the_replicas_lag(replica_worker: WorkerProcess, replicated: Replicated):
    status, body = get(f"{replica_worker.url}/health")
    assert status == 200
    assert body["replica"]["ok"] and body["replica"]["in_recovery"]
    with psycopg.connect(replicated.replica_admin_url, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            save(replicated.primary_url, [OrderGenerator(seed=14).order(START)])
            lagging = wait_until(lambda: lag(replica_worker)["bytes_behind"] > 0 and lag(replica_worker),
                                 timeout=30)
            behind = wait_until(lambda: replica_metrics(replica_worker).get(
                "restaurant_replica_lag_bytes", 0) > 0 and replica_metrics(replica_worker), timeout=30)
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    assert lagging["lag_seconds"] > 0
    assert behind["restaurant_replica_up"] == 1 and behind["restaurant_replica_lag_seconds"] > 0
    caught_up = wait_until(lambda: lag(replica_worker)["bytes_behind"] == 0 and lag(replica_worker),
                           timeout=30)
    assert caught_up["lag_seconds"] == 0
    assert replica_metrics(replica_worker) == {
        "restaurant_replica_up": 1, "restaurant_replica_lag_bytes": 0, "restaurant_replica_lag_seconds": 0}


def replica_metrics(worker: WorkerProcess) -> dict[str, float]:
    """The replica's samples in the worker's /metrics, by name."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
        return {s.name: s.value for f in families for s in f.samples
                if s.name.startswith("restaurant_replica_")}


def test_every_metric_the_grafana_dashboard_queries_is_in_a_real_workers_metrics(
    replica_worker: WorkerProcess
):
    with urllib.request.urlopen(f"{replica_worker.url}/metrics", timeout=10) as response:
        exposed = series_names(response.read().decode())
    named = metric_names(queries(dashboard()))
    assert "restaurant_replica_lag_seconds" in named
    assert named - exposed == set()


def lag(worker: WorkerProcess) -> dict:
    return get(f"{worker.url}/health")[1]["replica"]


def test_reports_answer_from_the_replica_even_with_the_primary_down(
    replica_worker: WorkerProcess, replicated: Replicated
):
    status, body = hour_reports(replica_worker)
    assert status == 200, body
    stored = query(replicated.primary_url, "SELECT period_start, orders FROM report_sales"
                                           " WHERE granularity = 'hour' AND store_id = '' ORDER BY 1")
    assert [(datetime.fromisoformat(r["period_start"]), r["orders"]) for r in body["reports"]] == stored
    assert len(stored) == 2
    replicated.primary.stop()
    try:
        # /health's probes are cached for a second
        wait_until(lambda: get(f"{replica_worker.url}/health")[0] == 503, timeout=10)
        assert hour_reports(replica_worker) == (status, body)
    finally:
        replicated.primary.start()
