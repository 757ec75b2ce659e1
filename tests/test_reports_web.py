"""A real worker whose timer runs the real report job, and the report endpoints it serves."""

import asyncio
import csv
import io
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.database import Database
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.web import reports
from spark_reports.ledger import REPORT_LOCK_ID
from tests.services import get, query, unique_names, wait_until
from tests.test_reports_job import make_order, save

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
"""11:00 in São Paulo, the restaurant's time zone."""


def reports_url(worker: WorkerProcess, **params: str) -> str:
    return f"{worker.url}/reports?{urllib.parse.urlencode(params)}"


@pytest.fixture(scope="module")
def reporting_worker(
    stack: ScratchStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker with a few hours of orders, once its timer has run the report job successfully."""
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    save(url, [make_order(START + timedelta(minutes=7 * n), 100 + n % 5,
                          [("Picanha na Chapa", 1 + n % 3), ("Caipirinha", 1)]) for n in range(30)])
    with psycopg.connect(url) as conn:  # ingested yesterday: later runs find nothing new
        conn.execute("UPDATE orders SET ingested_at = ingested_at - interval '1 day'")
    home = tmp_path_factory.mktemp("reporting-worker")
    worker = WorkerProcess({
        **unique_names(),
        "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": url,
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3",
        "SPARK_DRIVER_MEMORY": "512m",
        "TOPIC_PARTITIONS": "2",
        "DATA_DIR": str(home / "data"),
    }, home / "worker.log")
    worker.start()
    try:
        worker.wait_for_log("Report run succeeded in", timeout=240)
        yield worker
    finally:
        worker.stop()


def test_the_timer_ran_the_real_job_and_logged_it_in_one_line(reporting_worker: WorkerProcess):
    url = reporting_worker.env["DATABASE_URL"]
    log = reporting_worker.log_file.read_text()
    windows = query(url, "SELECT count(*) FROM report_sales WHERE store_id = %s", (CHAIN_STORE,))[0][0]
    assert windows > 30
    assert f"s: {windows} window(s) written, 60 order line(s) read." in log
    wait_until(lambda: query(url, "SELECT count(*) FROM report_runs WHERE status = 'succeeded'")[0][0] > 1,
               timeout=60, message="the timer never ran the job a second time")
    assert query(url, "SELECT count(*) FROM report_runs WHERE status <> 'succeeded'") == [(0,)]


def test_latest_reports(reporting_worker: WorkerProcess):
    status, body = get(f"{reporting_worker.url}/reports/latest")
    assert status == 200
    last_order = START + timedelta(minutes=7 * 29)
    assert body["minute"]["period_start"] == last_order.isoformat()
    assert body["minute"]["orders"] == 1
    assert body["minute"]["dishes"] == [
        {"dish": "Picanha na Chapa", "quantity": 3, "revenue": "269.70", "rank": 1},
        {"dish": "Caipirinha", "quantity": 1, "revenue": "24.90", "rank": 2},
    ]
    assert body["minute"]["final"] is True and body["minute_under_way"] is None
    stored = query(reporting_worker.env["DATABASE_URL"],
                   "SELECT revenue_by_channel, revenue_by_payment FROM report_sales"
                   " WHERE granularity = 'minute' AND period_start = %s AND store_id = ''", (last_order,))[0]
    for name, breakdown in zip(("revenue_by_channel", "revenue_by_payment"), stored, strict=True):
        expected = {key: f"{Decimal(str(amount)):.2f}" for key, amount in breakdown.items()}
        assert body["minute"][name] == expected and expected
    assert body["hour"]["period_start"] == "2026-11-20T17:00:00+00:00"
    assert body["day"]["period_start"] == "2026-11-20T03:00:00+00:00"
    assert body["day"]["orders"] == 30 and body["day"]["unique_customers"] == 5
    assert {i["kind"] for i in body["insights"]} >= {"top_dish", "revenue_vs_previous_hour"}
    assert body["last_run"]["status"] == "succeeded"


def test_reports_between_two_moments(reporting_worker: WorkerProcess):
    status, body = get(reports_url(reporting_worker, **{"from": "2026-11-20T14:00:00Z",
                                                        "to": "2026-11-20T15:00:00Z"}))
    assert status == 200
    assert body["granularity"] == "minute"
    assert [r["period_start"] for r in body["reports"]] == [
        (START + timedelta(minutes=7 * n)).isoformat() for n in range(9)
    ]
    assert {i["kind"] for i in body["insights"]} >= {"top_dish"}
    assert all("R$" in i["message"] for i in body["insights"])
    assert body["insights_truncated"] is False


def test_reports_by_hour_with_local_times_and_an_unescaped_plus(reporting_worker: WorkerProcess):
    local = reports_url(reporting_worker, granularity="hour",
                        **{"from": "2026-11-20T11:00", "to": "2026-11-20T13:00"})
    plus = (f"{reporting_worker.url}/reports?granularity=hour"
            "&from=2026-11-20T14:00:00+00:00&to=2026-11-20T16:00:00+00:00")
    for url in (local, plus):
        status, body = get(url)
        assert status == 200, body
        assert [r["period_start"] for r in body["reports"]] == [
            "2026-11-20T14:00:00+00:00", "2026-11-20T15:00:00+00:00"]
        assert sum(r["orders"] for r in body["reports"]) == 18


def csv_download(url: str) -> tuple[str, bytes]:
    """GET a CSV download: the file name it is offered under, and its bytes."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and response.headers.get_content_type() == "text/csv"
        return response.headers.get_filename(), response.read()


def test_reports_as_csv_in_brazilian_and_international_numbers(reporting_worker: WorkerProcess):
    window = {"granularity": "hour", "from": "2026-11-20T11:00", "to": "2026-11-20T13:00"}
    _, body = get(reports_url(reporting_worker, **window))
    for numbers, separator in (("br", ";"), ("intl", ",")):
        query_string = urllib.parse.urlencode({**window, "numbers": numbers})
        name, raw = csv_download(f"{reporting_worker.url}/reports.csv?{query_string}")
        assert name == "relatorio-vendas.csv"
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=separator))
        assert [row["store"] for row in rows] == [reports.CSV_CHAIN] * 2
        assert [row["period_start"] for row in rows] == ["20/11/2026 11:00", "20/11/2026 12:00"]
        assert [int(row["orders"]) for row in rows] == [r["orders"] for r in body["reports"]]
        revenue = [Decimal(row["gross_revenue"].replace(",", ".")) for row in rows]
        assert revenue == [Decimal(r["gross_revenue"]) for r in body["reports"]]
        assert ("," in rows[0]["gross_revenue"]) == (numbers == "br")


def test_a_stores_reports_as_csv_name_the_store_in_each_row_and_in_the_file_name(
    reporting_worker: WorkerProcess
):
    window = {"granularity": "hour", "from": "2026-11-20T11:00", "to": "2026-11-20T13:00", "store": "main"}
    _, body = get(reports_url(reporting_worker, **window))
    name, raw = csv_download(f"{reporting_worker.url}/reports.csv?{urllib.parse.urlencode(window)}")
    assert name == "relatorio-vendas-main.csv"
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert [(row["store"], int(row["orders"])) for row in rows] == [
        (r["store_id"], r["orders"]) for r in body["reports"]]
    assert [r["store_id"] for r in body["reports"]] == ["main", "main"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"to": "2026-11-20T15:00:00Z"}, "'from' is required"),
    ({"from": "yesterday", "to": "2026-11-20T15:00:00Z"}, "'from' is not an ISO 8601 timestamp"),
    ({"from": "2026-11-20T15:00:00Z", "to": "2026-11-20T14:00:00Z"}, "'from' must be earlier than 'to'"),
    ({"from": "2026-11-20T14:00:00Z", "to": "2026-11-20T15:00:00Z", "granularity": "week"},
     "'granularity' must be one of minute, hour, day"),
    ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "more than 10000 minute windows"),
    ({"from": "2026-11-20T14:00:00Z" + "9" * 5000, "to": "2026-11-20T15:00:00Z"},
     "'from' is longer than 64 characters"),
    ({"from": "2026-11-20T14:00:00Z", "to": "2026-11-20T15:00:00Z", "granularity": "hour" * 1000},
     "'granularity' is longer than 64 characters"),
])
def test_bad_parameters_get_400_with_a_short_reason(
    reporting_worker: WorkerProcess, params: dict, reason: str
):
    status, body = get(reports_url(reporting_worker, **params))
    assert status == 400
    assert reason in body["error"]
    assert len(body["error"]) < 120


def test_a_repeated_parameter_gets_400(reporting_worker: WorkerProcess):
    status, body = get(f"{reporting_worker.url}/reports?from=2026-11-20T14:00:00Z&to=2026-11-20T15:00:00Z"
                       "&from=2026-11-20T13:00:00Z")
    assert (status, body) == (400, {"error": "'from' is given more than once"})


async def test_insights_are_capped_with_a_flag_that_says_so(
    stack: ScratchStack, monkeypatch: pytest.MonkeyPatch
):
    url = stack.new_database()
    database = Database(url)
    await database.migrate()
    with psycopg.connect(url) as conn:
        for minute in range(3):
            at = START + timedelta(minutes=minute)
            conn.execute("INSERT INTO report_insights VALUES ('anomalous_minute', %s, %s, '', 'x', '{}',"
                         " now())", (at, at + timedelta(minutes=1)))
    monkeypatch.setattr(reports, "database", database)
    monkeypatch.setattr(reports, "reports_database", database)  # /reports reads there
    await database.ready()
    try:
        end = START + timedelta(hours=1)
        rows, truncated = await reports.insights_between(START, end, CHAIN_STORE, limit=2)
        assert [row["window_start"] for row in rows] == [START, START + timedelta(minutes=1)]
        assert truncated is True
        rows, truncated = await reports.insights_between(START, end, CHAIN_STORE, limit=3)
        assert (len(rows), truncated) == (3, False)
    finally:
        await database.close()


def test_a_skipped_window_is_shown_until_the_next_run_fills_it(reporting_worker: WorkerProcess):
    url = reporting_worker.env["DATABASE_URL"]
    skipped = START + timedelta(minutes=7)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (REPORT_LOCK_ID,))  # no run fills it meanwhile
        conn.execute("DELETE FROM report_sales WHERE granularity = 'minute' AND period_start = %s",
                     (skipped,))
        conn.execute("INSERT INTO report_skipped_windows (period_start, run_id)"
                     " SELECT %s, max(run_id) FROM report_runs", (skipped,))
        wait_until(lambda: get(f"{reporting_worker.url}/health")[1]["status"] == "degraded", timeout=10)
        status, health = get(f"{reporting_worker.url}/health")
        _, latest = get(f"{reporting_worker.url}/reports/latest")
        _, dashboard = get(f"{reporting_worker.url}/api/dashboard/health")
        _, between = get(reports_url(reporting_worker, **{"from": "2026-11-20T14:00:00Z",
                                                          "to": "2026-11-20T15:00:00Z"}))
        conn.execute("SELECT pg_advisory_unlock(%s)", (REPORT_LOCK_ID,))
    assert (status, health["down"]) == (200, ["reports"])
    assert health["reports"] == {"ok": False, "skipped_windows": 1, "oldest_skipped": skipped.isoformat(),
                                 "failed_runs": 0}
    assert latest["skipped_windows"] == {"count": 1, "oldest": skipped.isoformat()}
    assert dashboard["pipeline"]["skipped_windows"]["count"] == 1
    assert between["skipped_windows"] == [skipped.isoformat()]
    wait_until(lambda: query(url, "SELECT count(*) FROM report_skipped_windows") == [(0,)], timeout=240,
               message="no run filled the skipped window")
    assert query(url, "SELECT orders FROM report_sales WHERE granularity = 'minute' AND period_start = %s"
                      " AND store_id = ''", (skipped,)) == [(1,)]
    retried = "SELECT count(*) FROM report_runs WHERE retried_skips AND status = 'succeeded'"
    assert query(url, retried) == [(1,)]
    wait_until(lambda: get(f"{reporting_worker.url}/health")[1]["status"] == "ok", timeout=10)
