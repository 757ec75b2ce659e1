"""The report job on a real Spark Connect server, and the server's own start and stop.

One server serves the module. Its sessions start in UTC, so figures that follow the
restaurant's clock prove that each run sets its session's time zone itself. Every figure is
checked against plain SQL, as in test_reports_job, and a full rebuild in a local session of
the job's own gives the same rows as the runs on the server.
"""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from infra import stack as stack_module
from infra.java import StackError
from infra.scratch import ScratchStack
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from restaurant_app.database import Database
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
