"""The dashboard's login beyond loopback, and no secret in any answer or log of the worker."""

import asyncio
import base64
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.models import OrderEvent
from restaurant_app.order_sink import save_orders
from restaurant_app.settings import settings_or_exit
from restaurant_app.traffic import OrderGenerator
from restaurant_app.web.login import allowed, presented_token
from tests.services import produce, query, unique_names, wait_until

TOKEN = "dashboard-t0ken-for-the-test-only"
SPARK_TOKEN = "spark-t0ken-for-the-test-only"
GUARDED = ("/", "/api/dashboard/summary", "/api/dashboard/health", "/reports/latest", "/stats/",
           "/static/dashboard/dashboard.js")
OPEN = ("/livez", "/readyz", "/health", "/metrics")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_token_is_taken_as_a_bearer_token_or_a_basic_password():
    assert presented_token(f"Bearer {TOKEN}") == TOKEN
    assert presented_token(basic("anyone", TOKEN)) == TOKEN
    assert presented_token("Basic not-base64!") == ""
    assert presented_token(None) == ""


@pytest.mark.parametrize("path", GUARDED)
def test_every_page_but_the_probes_needs_the_token(path: str):
    assert not allowed(path, None, TOKEN)
    assert not allowed(path, "Bearer wrong", TOKEN)
    assert not allowed(path, basic("anyone", "wrong"), TOKEN)
    assert allowed(path, f"Bearer {TOKEN}", TOKEN)
    assert allowed(path, None, "")  # no token set: the server is on loopback (settings refuse otherwise)


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_metrics_stay_open(path: str):
    assert allowed(path, None, TOKEN)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "restaurant.example"])
def test_listening_beyond_loopback_without_a_token_stops_with_one_line(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
):
    monkeypatch.setenv("WEB_HOST", host)
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    with pytest.raises(SystemExit) as stopped:
        settings_or_exit()
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "DASHBOARD_TOKEN must be set" in error and host in error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_on_loopback_no_token_is_needed(host: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WEB_HOST", host)
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    assert settings_or_exit().dashboard_token == ""


def ask(url: str, authorization: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def open_worker(stack: ScratchStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker on every interface with a token, logged in as the ingest role (its ``DATABASE_URL``,
    after the owner migrated) and reading the dashboard as the web role, as ``make run`` starts it."""
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    name = conninfo_to_dict(url)["dbname"]
    stack.postgres.enable_roles(name)
    asyncio.run(save_orders(url, [OrderGenerator(seed=24).order() for _ in range(5)]))
    home = tmp_path_factory.mktemp("open-worker")
    worker = WorkerProcess({
        **unique_names(), "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": stack.postgres.role_url("restaurant_ingest", name),
        "WEB_DATABASE_URL": stack.postgres.role_url("restaurant_web", name),
        "REPORT_JOB_DATABASE_URL": stack.postgres.role_url("restaurant_reports", name),
        "SPARK_REMOTE": f"sc://localhost:{free_port()}/;token={SPARK_TOKEN}",
        "WEB_HOST": "0.0.0.0", "DASHBOARD_TOKEN": TOKEN, "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600", "TOPIC_PARTITIONS": "2", "DATA_DIR": str(home / "data"),
    }, home / "worker.log")
    worker.start()
    try:
        wait_until(lambda: ask(f"{worker.url}/readyz")[0] == 200, timeout=30)
        yield worker
    finally:
        worker.stop()


@pytest.mark.integration
@pytest.mark.parametrize("path", GUARDED)
def test_a_client_without_the_token_or_with_a_wrong_one_is_refused(open_worker: WorkerProcess, path: str):
    for authorization in (None, "Bearer wrong", basic("admin", "wrong")):
        status, body = ask(open_worker.url + path, authorization)
        assert status == 401, (path, authorization)
        assert TOKEN.encode() not in body


@pytest.mark.integration
@pytest.mark.parametrize("path", GUARDED)
def test_a_client_with_the_token_is_served(open_worker: WorkerProcess, path: str):
    assert ask(open_worker.url + path, f"Bearer {TOKEN}")[0] == 200
    assert ask(open_worker.url + path, basic("manager", TOKEN))[0] == 200


@pytest.mark.integration
def test_the_dashboard_reads_the_orders_as_the_web_role(open_worker: WorkerProcess):
    status, body = ask(open_worker.url + "/api/dashboard/summary", f"Bearer {TOKEN}")
    assert status == 200 and b'"orders"' in body


@pytest.mark.integration
def test_orders_and_rejections_are_stored_as_the_ingest_role(open_worker: WorkerProcess):
    url = open_worker.env["DATABASE_URL"]
    orders = [OrderGenerator(seed=2400).order() for _ in range(3)]
    produce(open_worker.env["KAFKA_BROKER"], open_worker.env["ORDERS_TOPIC"],
            [(order.order_id.encode(), order.dumps()) for order in orders] + [(None, b"{not json")])
    dead_lettered = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NOT NULL"
    wait_until(lambda: query(url, dead_lettered) == [(1,)], timeout=60)  # stored, published, marked
    stored = {row[0] for row in query(url, "SELECT order_id::text FROM orders")}
    assert {order.order_id for order in orders} <= stored
    cancellation = OrderEvent(kind="cancellation", event_id=str(uuid.uuid4()), order_id=orders[0].order_id,
                              created_at=orders[0].created_at + timedelta(seconds=1), reason="teste")
    produce(open_worker.env["KAFKA_BROKER"], open_worker.env["ORDERS_TOPIC"],
            [(orders[0].order_id.encode(), cancellation.dumps())])
    wait_until(lambda: query(url, "SELECT event_id::text FROM order_events") == [(cancellation.event_id,)],
               timeout=60)


@pytest.mark.integration
def test_the_worker_keeps_its_day_partitions_without_an_owner_s_login(open_worker: WorkerProcess):
    url = open_worker.env["DATABASE_URL"]
    assert query(url, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user") == [
        ("restaurant_ingest", False)]
    week_ahead = datetime.now(UTC).date() + timedelta(days=7)
    wait_until(lambda: query(url, "SELECT to_regclass(%s) IS NOT NULL", (f"orders_p{week_ahead:%Y%m%d}",))
               == [(True,)], timeout=60, message="the worker never made the day partitions ahead")
    log = Path(open_worker.log_file).read_text(errors="replace")
    assert "Created the day partitions of orders and order_items" in log
    assert "Failed while" not in log and "permission denied" not in log


@pytest.mark.integration
def test_no_secret_in_any_answer_or_the_log(open_worker: WorkerProcess):
    env = open_worker.env
    logins = ("DATABASE_URL", "WEB_DATABASE_URL", "REPORT_JOB_DATABASE_URL")
    secrets = [TOKEN, SPARK_TOKEN, *(conninfo_to_dict(env[name])["password"] for name in logins)]
    answers = [ask(open_worker.url + path)[1] for path in OPEN]
    answers += [ask(open_worker.url + path, f"Bearer {TOKEN}")[1]
                for path in ("/stats/", "/api/dashboard/health", "/reports/latest")]
    log = Path(open_worker.log_file).read_bytes()
    for secret in secrets:
        assert all(secret.encode() not in answer for answer in answers), secret[:4]
        assert secret.encode() not in log, secret[:4]
