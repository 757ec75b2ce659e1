"""The worker's web server: where it listens, what it serves, and what /health costs and says."""

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg
import pytest
from psycopg import sql

from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port
from tests.services import fetch, get, unique_names, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database(stack: ScratchStack) -> str:
    """A database whose statements PostgreSQL writes to its log, so that a test can count them."""
    url = stack.new_database()
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        conn.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(sql.Identifier(name)))
    return url


@pytest.fixture(scope="module")
def healthy_worker(
    stack: ScratchStack, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker with Kafka and PostgreSQL up, shared by the tests that only read from it."""
    home = tmp_path_factory.mktemp("web-worker")
    worker = WorkerProcess({
        **unique_names(),
        "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": database,
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600",
        "TOPIC_PARTITIONS": "2",
        "DATA_DIR": str(home / "data"),
    }, home / "worker.log")
    worker.start()
    try:
        wait_until(lambda: get(f"{worker.url}/health")[0] == 200, timeout=30,
                   message="the worker's /health never answered 200")
        yield worker
    finally:
        worker.stop()


def test_health_is_ok_when_kafka_and_postgres_answer(healthy_worker: WorkerProcess):
    status, body = get(f"{healthy_worker.url}/health")
    assert status == 200
    assert body == {"status": "ok", "down": [], "kafka": {"ok": True, "brokers": 1}, "database": {"ok": True},
                    "ingest": {"ok": True},
                    "reports": {"ok": True, "skipped_windows": 0, "oldest_skipped": None, "failed_runs": 0},
                    "kafka_retention": {"ok": True}}


def probes_logged(stack: ScratchStack, offset: int) -> int:
    """How many times PostgreSQL ran the health probe's query since byte ``offset`` of its log."""
    text = stack.postgres.log_file.read_text(errors="replace")[offset:]
    return sum(line.endswith("statement: SELECT 1") for line in text.splitlines())


def test_readyz_and_livez_answer_200_when_it_can_store(healthy_worker: WorkerProcess):
    status, body = get(f"{healthy_worker.url}/readyz")
    assert (status, body["status"], body["down"]) == (200, "ready", [])
    assert sorted(body) == ["database", "down", "ingest", "kafka", "status"]
    assert get(f"{healthy_worker.url}/livez") == (200, {"status": "alive"})


def test_many_concurrent_health_requests_share_a_few_probes(
    healthy_worker: WorkerProcess, stack: ScratchStack
):
    time.sleep(1.2)  # the answer of the fixture's last request is stale now
    offset = stack.postgres.log_file.stat().st_size
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(lambda _: get(f"{healthy_worker.url}/health"), range(200)))
    elapsed = time.monotonic() - started
    assert all(status == 200 and body["database"] == {"ok": True} for status, body in answers)
    # One probe per second at most: the first request's, then one per second that passed.
    assert 1 <= probes_logged(stack, offset) <= int(elapsed) + 1, f"{elapsed:.1f} s"


def test_faust_stats_are_served_at_stats_and_none_of_its_other_views(healthy_worker: WorkerProcess):
    status, body = get(f"{healthy_worker.url}/stats/")
    assert status == 200
    sensor = body["Sensor0"]
    assert "messages_received_total" in sensor
    assert "events_total" in sensor
    for path in ("/router/", "/table/", "/tables/", "/graph/", "/performance/", "/assignment/"):
        assert fetch(f"{healthy_worker.url}{path}")[0] == 404, path
    assert b"Sensor0" not in fetch(f"{healthy_worker.url}/")[1]


def non_loopback_addresses() -> list[str]:
    return [address.address for addresses in psutil.net_if_addrs().values() for address in addresses
            if address.family == socket.AF_INET and not address.address.startswith("127.")]


def test_the_web_server_listens_on_127_0_0_1_only(healthy_worker: WorkerProcess):
    listening = {conn.laddr.ip for conn in psutil.Process(healthy_worker.pid).net_connections(kind="inet")
                 if conn.status == psutil.CONN_LISTEN and conn.laddr.port == healthy_worker.web_port}
    assert listening == {"127.0.0.1"}
    for address in non_loopback_addresses():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, healthy_worker.web_port), timeout=5).close()


def test_unreachable_postgres_gets_503_that_names_no_host_port_or_user(worker: WorkerProcess):
    port = free_port()
    worker.env["DATABASE_URL"] = f"postgresql://someone:secret-word@127.0.0.1:{port}/nowhere"
    worker.start()
    status, body = get(f"{worker.url}/health")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["kafka"]["ok"] is True
    assert body["database"] == {"ok": False, "error": "PostgreSQL is unreachable"}
    reports_status, reports_body = get(f"{worker.url}/reports/latest")
    assert (reports_status, reports_body) == (503, {"error": "PostgreSQL is unreachable"})
    for text in (json.dumps(body), json.dumps(reports_body)):
        assert not any(word in text for word in ("127.0.0.1", str(port), "someone", "secret", "nowhere"))
    log = worker.log_file.read_text()
    assert f"Health check: PostgreSQL at 127.0.0.1:{port}/nowhere is unreachable" in log
    assert f"Reports: PostgreSQL at 127.0.0.1:{port}/nowhere is unreachable" in log
