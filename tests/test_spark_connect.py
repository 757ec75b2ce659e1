"""The report job on a real Spark Connect server, and the server's own start and stop.

One server serves the module. Its sessions start in UTC, so figures that follow the
restaurant's clock prove that each run sets its session's time zone itself. Every figure is
checked against plain SQL, as in test_reports_job, and a full rebuild in a local session of
the job's own gives the same rows as the runs on the server.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import psycopg
import pytest

from infra import stack as stack_module
from infra.java import StackError
from infra.scratch import ScratchStack
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.models import Order, OrderItem
from restaurant_app.settings import Settings
from tests.services import query, run_report_job
from tests.test_reports_job import (
    DAYS,
    ZONE,
    actual_insights,
    dish_rows,
    expected,
    history,
    late_orders,
    make_order,
    sales_rows,
    same_figures,
    save,
    snapshot,
    without_computed_at,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkConnectServer]:
    server = SparkConnectServer(tmp_path_factory.mktemp("spark-connect"), free_port(),
                                timezone="UTC", driver_memory="512m")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def on_server(server: SparkConnectServer) -> dict[str, str]:
    return {"SPARK_REMOTE": server.remote}


LOCAL_SESSION = {"SPARK_REMOTE": ""}


@dataclass
class Runs:
    """The module's runs on the server, the local rebuild, and the tables after each."""

    url: str
    first: dict
    after_first: dict
    expected_first: dict
    late: dict
    after_late: dict
    expected_late: dict
    full: dict
    after_full: dict
    local_full: dict
    after_local_full: dict


@pytest.fixture(scope="module")
def runs(stack: ScratchStack, spark_server: SparkConnectServer) -> Runs:
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    save(url, history())
    with psycopg.connect(url) as conn:  # the history arrived yesterday
        conn.execute("UPDATE orders SET ingested_at = ingested_at - interval '1 day'")
    first = run_report_job(url, env=on_server(spark_server))
    after_first, expected_first = snapshot(url), expected(url)
    save(url, late_orders())
    # As the worker's timer launches it: its session opened on the server before its moment.
    late = run_report_job(url, "--not-before", f"{time.time() + 1:.3f}", env=on_server(spark_server))
    after_late, expected_late = snapshot(url), expected(url)
    full = run_report_job(url, "--full", env=on_server(spark_server))
    after_full = snapshot(url)
    local_full = run_report_job(url, "--full", env=LOCAL_SESSION)
    return Runs(url, first, after_first, expected_first, late, after_late,
                expected_late, full, after_full, local_full, snapshot(url))


def test_every_run_succeeded_and_the_server_is_still_up(runs: Runs, spark_server: SparkConnectServer):
    for result in (runs.first, runs.late, runs.full, runs.local_full):
        assert (result["status"], result["exit_code"]) == ("succeeded", 0), result
    assert spark_server.process is not None and spark_server.process.poll() is None


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
def test_reports_on_the_server_equal_sql_over_the_orders(runs: Runs, unit: str):
    for tables, wanted in ((runs.after_first, runs.expected_first),
                           (runs.after_late, runs.expected_late)):
        assert sales_rows(tables, unit) == wanted["sales"][unit]
        assert dish_rows(tables, unit) == wanted["dishes"][unit]


def test_insights_on_the_server_equal_sql_over_the_orders(runs: Runs):
    actual = actual_insights(runs.url)
    wanted = runs.expected_late["insights"]
    assert actual.keys() == wanted.keys()
    different = [key for key in wanted if not same_figures(actual[key], wanted[key])]
    assert not different, [(key, actual[key], wanted[key]) for key in different[:5]]


def test_an_incremental_run_on_the_server_reads_only_the_changed_minutes(runs: Runs):
    total = query(runs.url, "SELECT count(*) FROM orders")[0][0]
    assert runs.first["orders_read"] == total - len(late_orders())
    assert 0 < runs.late["orders_read"] < total / 20


def test_full_rebuild_on_the_server_equals_the_incremental_result(runs: Runs):
    assert without_computed_at(runs.after_full, runs.url) == without_computed_at(
        runs.after_late, runs.url)


def test_a_local_session_gives_the_same_rows_as_the_server(runs: Runs):
    assert runs.local_full["orders_read"] == runs.full["orders_read"]
    assert without_computed_at(runs.after_local_full, runs.url) == without_computed_at(
        runs.after_full, runs.url)


def test_a_server_that_is_down_fails_the_run_in_one_line_and_the_next_run_recovers(
    stack: ScratchStack, spark_server: SparkConnectServer,
):
    url = stack.new_database()
    save(url, [make_order(DAYS[0], 1, [("Caipirinha", 1)])])
    nowhere = f"sc://127.0.0.1:{free_port()}"
    failed = run_report_job(url, env={"SPARK_REMOTE": nowhere})
    assert (failed["status"], failed["exit_code"]) == ("failed", 1)
    assert failed["error"].startswith(f"The Spark Connect server at {nowhere} (SPARK_REMOTE) is unreachable")
    assert "\n" not in failed["error"] and failed["seconds"] < 15
    assert query(url, "SELECT status, error, outage FROM report_runs") == [("failed", failed["error"], True)]
    assert query(url, "SELECT count(*) FROM report_sales") == [(0,)]

    recovered = run_report_job(url, env=on_server(spark_server))
    assert recovered["status"] == "succeeded" and recovered["orders_read"] == 1
    # its minute, hour and day, for its store and for the chain
    assert query(url, "SELECT count(*) FROM report_sales") == [(6,)]


@contextmanager
def hanging_up_listener() -> Iterator[int]:
    """A port where connections are accepted and closed at once, as by a server going down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()

        def hang_up() -> None:
            with contextlib.suppress(OSError):  # the socket closes when the test ends
                while True:
                    sock.accept()[0].close()

        threading.Thread(target=hang_up, daemon=True).start()
        yield sock.getsockname()[1]


def test_a_server_that_stops_answering_fails_the_run_in_one_line(stack: ScratchStack):
    url = stack.new_database()
    save(url, [make_order(DAYS[0], 1, [("Caipirinha", 1)])])
    with hanging_up_listener() as port:
        remote = f"sc://127.0.0.1:{port}"
        failed = run_report_job(url, env={"SPARK_REMOTE": remote})
    assert (failed["status"], failed["exit_code"]) == ("failed", 1)
    assert failed["error"] == f"The Spark Connect server at {remote} (SPARK_REMOTE) stopped answering."
    assert failed["seconds"] < 30  # not the ten minutes of retries of Spark's client
    assert query(url, "SELECT status, error, outage FROM report_runs") == [("failed", failed["error"], True)]


# ---- the server on its own ------------------------------------------------------------------


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = SparkConnectServer(tmp_path, taken.getsockname()[1], timezone=ZONE)
        with pytest.raises(StackError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"):
            server.start()
    assert server.process is None


def test_a_server_that_exits_while_starting_fails_with_the_tail_of_its_log(tmp_path: Path):
    server = SparkConnectServer(tmp_path, free_port(), timezone=ZONE, master="nonsense")
    with pytest.raises(StackError) as error:
        server.start()
    assert "The Spark Connect server exited with code 1 while starting" in str(error.value)
    assert "Master must either be yarn or start with spark, k8s, or local" in str(error.value)
    assert server.process is None


# ---- make run's wiring, with a stand-in for the server --------------------------------------


class FakeServer:
    """Stands in for SparkConnectServer in local_stack: records start and stop, or fails."""

    instances: ClassVar[list["FakeServer"]] = []
    fail: ClassVar[bool] = False

    def __init__(self, home: Path, port: int, **options: str) -> None:
        self.port, self.log_file, self.state = port, home / "server.log", "new"
        self.token_file = home / "token"
        FakeServer.instances.append(self)

    @property
    def remote(self) -> str:
        return f"sc://localhost:{self.port}/;token=made-on-start"

    def start(self) -> None:
        if FakeServer.fail:
            raise StackError("The Spark Connect server exited with code 1 while starting.")
        self.state = "started"

    def stop(self) -> None:
        self.state = "stopped"

    def exited(self) -> str | None:
        return None if self.state == "started" else "is not running"


@contextmanager
def stack_with_fake_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fail: bool = False):
    """local_stack with Kafka and PostgreSQL named by the environment, so only Spark is started."""
    monkeypatch.setenv("KAFKA_BROKER", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setattr(stack_module, "SparkConnectServer", FakeServer)
    monkeypatch.setattr(FakeServer, "instances", [])
    monkeypatch.setattr(FakeServer, "fail", fail)
    with stack_module.local_stack(tmp_path, Settings.from_env(), spark_port=15999) as env:
        yield env


def test_make_run_starts_the_server_and_gives_the_worker_its_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    with stack_with_fake_server(monkeypatch, tmp_path) as env:
        assert env == {"SPARK_REMOTE": "sc://localhost:15999/;token=made-on-start"}
        assert [server.state for server in FakeServer.instances] == ["started"]
    assert [server.state for server in FakeServer.instances] == ["stopped"]


def test_make_run_uses_the_server_spark_remote_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:15002")
    with stack_with_fake_server(monkeypatch, tmp_path) as env:
        assert env == {}
    assert FakeServer.instances == []


def test_make_run_goes_on_without_a_server_that_cannot_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    with stack_with_fake_server(monkeypatch, tmp_path, fail=True) as env:
        assert env == {}
    assert "each report run starts its own Spark" in caplog.text


def dish_order(at: datetime, store: str, dish: str, quantity: int, channel: str) -> Order:
    """One order of one line of ``dish``, at 12.50 a unit, paid by pix."""
    item = OrderItem(dish=dish, category="Teste", unit_price=Decimal("12.50"), quantity=quantity)
    return Order(order_id=str(uuid.uuid4()), store_id=store, created_at=at, customer_id=quantity,
                 channel=channel, payment_method="pix", items=[item], total=item.subtotal)


ROLLED_FIGURES = ("orders", "items_sold", "gross_revenue", "identified_revenue", "net_revenue")
ROLLED_BREAKDOWNS = ("revenue_by_channel", "revenue_by_store", "payments_by_method")
REPORT_ROWS = f"""
SELECT period_start, store_id, {", ".join(ROLLED_FIGURES)},
       {", ".join(f"{name}::text" for name in ROLLED_BREAKDOWNS)}
FROM report_sales WHERE granularity = %s ORDER BY period_start, store_id
"""
RANKED_DISHES = """
SELECT period_start, store_id, array_agg(dish ORDER BY rank), array_agg(quantity ORDER BY rank)
FROM report_dishes WHERE granularity = %s GROUP BY period_start, store_id ORDER BY 1, 2
"""


def report_rows(url: str, granularity: str) -> dict[tuple, dict]:
    """Each window's figures and breakdowns (exact decimals), by (period_start, store_id)."""
    rows = {}
    for start, store, *values in query(url, REPORT_ROWS, (granularity,)):
        figures = dict(zip(ROLLED_FIGURES, values, strict=False))
        for name, text in zip(ROLLED_BREAKDOWNS, values[len(ROLLED_FIGURES):], strict=True):
            figures[name] = json.loads(text, parse_float=Decimal)
        rows[start, store] = figures
    return rows


def added_up(finer: dict[tuple, dict], unit: str) -> dict[tuple, dict]:
    """``finer`` windows added up into the ``unit`` windows (restaurant time) that hold them."""
    totals: dict[tuple, dict] = {}
    for (start, store), figures in finer.items():
        local = start.astimezone(ZoneInfo(ZONE))
        window = local.replace(minute=0) if unit == "hour" else local.replace(hour=0, minute=0)
        total = totals.setdefault((window, store), {name: {} for name in ROLLED_BREAKDOWNS})
        for name in ROLLED_FIGURES:
            total[name] = total.get(name, 0) + figures[name]
        for name in ROLLED_BREAKDOWNS:
            for key, amount in figures[name].items():
                total[name][key] = total[name].get(key, 0) + amount
    return totals


def test_hours_and_days_are_their_minutes_added_up_and_ties_rank_as_spark_ranks_them(
        stack: ScratchStack, spark_server: SparkConnectServer):
    """PostgreSQL adds up hours from minutes and days from hours as it publishes them: every
    figure and breakdown of each store and the chain is the sum of the finer windows, a minute
    left unchanged by a run counts in its recomputed hour, the dishes tied on quantity rank by
    name in byte order as Spark ranks a minute's, and the hour's top-dish insight is its first."""
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    hour = DAYS[0] + timedelta(hours=15)
    # Tied in their minute: "Zebra" < "arroz" < "Água" in byte order (a linguistic order differs).
    first = [dish_order(hour + timedelta(minutes=10, seconds=n), store, dish, quantity, channel)
             for n, (store, dish, quantity, channel) in enumerate([
                 ("loja-a", "Água", 2, "delivery"), ("loja-a", "arroz", 2, "dine_in"),
                 ("loja-a", "Zebra", 2, "dine_in"), ("loja-b", "arroz", 1, "takeaway")])]
    save(url, first)
    assert run_report_job(url, env=on_server(spark_server))["status"] == "succeeded"
    later = [dish_order(hour + timedelta(minutes=40), "loja-a", "Zebra", 1, "delivery")]
    save(url, later)
    second = run_report_job(url, env=on_server(spark_server))
    assert (second["status"], second["orders_read"], second["rows_read"]) == ("succeeded", 1, 1)

    minutes, hours, days = (report_rows(url, unit) for unit in ("minute", "hour", "day"))
    assert (len(minutes), len(hours), len(days)) == (5, 3, 3)  # each store's and the chain's
    assert hours == added_up(minutes, "hour")
    assert days == added_up(hours, "day")
    assert hours[hour, ""]["orders"] == 5 and hours[hour, ""]["revenue_by_store"] == {
        "loja-a": Decimal("87.50"), "loja-b": Decimal("12.50")}

    ranked = {(granularity, store): (dishes, quantities)
              for granularity in ("minute", "hour")
              for start, store, dishes, quantities in query(url, RANKED_DISHES, (granularity,))
              if start in (hour, hour + timedelta(minutes=10))}
    assert ranked["minute", "loja-a"] == (["Zebra", "arroz", "Água"], [2, 2, 2])  # Spark's ranks
    assert ranked["hour", "loja-a"] == (["Zebra", "arroz", "Água"], [3, 2, 2])  # PostgreSQL's
    assert ranked["hour", ""] == (["Zebra", "arroz", "Água"], [3, 3, 2])
    top = query(url, "SELECT store_id, figures::text FROM report_insights WHERE kind = 'top_dish'"
                     " ORDER BY store_id")
    assert [(store, json.loads(text, parse_float=Decimal)) for store, text in top] == [
        ("", {"dish": "Zebra", "quantity": 3, "revenue": Decimal("37.50")}),
        ("loja-a", {"dish": "Zebra", "quantity": 3, "revenue": Decimal("37.50")}),
        ("loja-b", {"dish": "arroz", "quantity": 1, "revenue": Decimal("12.50")}),
    ]
