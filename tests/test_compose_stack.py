"""docker-compose.yml run as containers on this machine's Docker engine, and checked from outside.

`make compose-check` (compose/check.sh) installs the engine and Compose and builds the images
first; these tests start the stack with `docker compose up`, as a user does, and read it through
`docker compose exec`: PostgreSQL with psql, the orders topic with a Kafka client in a worker's
container, the dashboard on its published port. The tests run in order, on one stack: the flow
of orders and reports, the dashboard and the replica; every hop refusing a client without its
secret or with a wrong one (the Spark master an unencrypted one too), the Spark web UIs closed to
the network, and no secret in a log, a page or `docker inspect`; four workers; a broker killed,
the primary stopped and the generating worker cut off the network, each under load or while it
generates; every secret rotated; then `down` and `up` again, then `down -v`. Each checks the
exact account of the orders.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from restaurant_app.settings import PROJECT_ROOT
from tests.services import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.compose]

PROJECT = "restaurant-sales"  # docker-compose.yml's name
DASHBOARD = "http://127.0.0.1:6066"
SECRETS_AT = "/run/restaurant-secrets"
"""Where each service finds its own secrets, which the one-shot service `secrets` made."""


def logged_in(stack: Stack, url: str, token: str = "") -> urllib.request.Request:
    """A request for a page of the dashboard, with its login (or ``token``)."""
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {token or stack.dashboard_token}"})
TIMINGS = PROJECT_ROOT / ".stack" / "compose" / "timings.json"
"""Where the time from `up` to the first stored order and first final report is written, for
bench/RESULTS.md (measured here, never asserted)."""

BAD_ORDER_ID = "not-a-uuid"
BAD_MESSAGES = [b"not an order", b"{}", b'{"order_id": "%s", "total": "-1"}' % BAD_ORDER_ID.encode()]
"""Messages the pipeline must reject, each recorded once in rejected_orders."""

LOADED_ORDERS = 300
"""Orders `produce-orders` publishes into the running stack, beside the leader's generator."""

KAFKA_LOGIN = """
from restaurant_app.settings import Settings
LOGIN = Settings.from_env().kafka_security.client_options()  # the worker's: SCRAM over TLS
"""
"""Prepended to the scripts that use Kafka in a worker's container: its login there."""

READ_TOPIC = KAFKA_LOGIN + """
import asyncio, json, os, sys
from aiokafka import AIOKafkaConsumer

def order_id(value):
    try:
        message = json.loads(value)
        return "event:" + message["event_id"] if "kind" in message else message["order_id"]
    except Exception:
        return None

async def main(topic):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=os.environ["KAFKA_BROKER"],
                                enable_auto_commit=False, **LOGIN)  # no group: every partition is assigned
    await consumer.start()
    try:
        while len(consumer.assignment()) < int(os.environ["ORDERS_TOPIC_PARTITIONS"]):
            await asyncio.sleep(0.1)  # until the metadata lists every partition
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages, left = [], set(partitions)
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batch.items():
                messages += [[tp.partition, r.offset, order_id(r.value)] for r in records
                             if r.offset < ends[tp]]
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        print(json.dumps(messages))
    finally:
        await consumer.stop()

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))  # a client stuck on stale leaders gives up
"""

PRODUCE_RAW = KAFKA_LOGIN + """
import asyncio, os, sys
from aiokafka import AIOKafkaProducer

async def main(topic, values):
    producer = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BROKER"], acks="all", **LOGIN)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

asyncio.run(main(sys.argv[1], [bytes.fromhex(v) for v in sys.argv[2:]]))
"""


def wait_for(what: str, condition: Callable[[], object], timeout: float, every: float = 3.0):
    """Poll ``condition`` every ``every`` s until it returns something true, and return that."""
    return wait_until(condition, timeout, every, f"{what}: not within {timeout:.0f} s")


@dataclass
class Stack:
    """The compose project, driven with the docker CLI as a user would."""

    env: dict[str, str]

    @functools.cached_property
    def dashboard_token(self) -> str:
        """The dashboard's login, as its user reads it (docs/docker-compose.md)."""
        return self.compose("exec", "-T", "dashboard", "cat", f"{SECRETS_AT}/dashboard-token",
                            timeout=60).stdout.decode().strip()

    def compose(self, *args: str, timeout: float = 900, check: bool = True,
                stdin: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", "compose", *args], cwd=PROJECT_ROOT, env=self.env, input=stdin,
            capture_output=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout.decode()}{result.stderr.decode()}")
        return result

    def up(self, *args: str) -> None:
        result = self.compose("up", "--detach", "--no-build", *args, check=False)
        if result.returncode != 0:
            raise AssertionError(f"docker compose up {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr.decode()[-3000:]}{self.unhealthy_logs()}")

    def unhealthy_logs(self) -> str:
        """The last lines of each service whose container is unhealthy or exited with an error."""
        states = self.compose("ps", "--all", "--format", "{{.Service}} {{.Health}} {{.State}} {{.ExitCode}}",
                              check=False).stdout.decode().splitlines()
        failing = sorted({line.split()[0] for line in states
                          if "unhealthy" in line or (" exited " in line and not line.endswith(" 0"))})
        return "".join(f"\n--- the end of {name}'s log:\n" + self.compose(
            "logs", "--no-color", "--tail", "40", name, check=False).stdout.decode() for name in failing)

    def sql(self, query: str, service: str = "postgres", **values: object) -> list[list[str]]:
        """Rows of ``query`` from psql in ``service``; ``values`` are psql variables (:'name')."""
        result = self.compose(
            "exec", "-T", "--user", "postgres", service, "psql", "--username=postgres",
            "--dbname=restaurant", "--tuples-only", "--no-align", "--field-separator=|",
            "--set=ON_ERROR_STOP=1", *(f"--set={name}={value}" for name, value in values.items()),
            "--file=-", stdin=query.encode(), timeout=60, check=False,
        )
        if result.returncode != 0:
            return []  # not up yet, or the table is not made yet: callers wait for rows
        return [line.split("|") for line in result.stdout.decode().splitlines() if line]

    def python(self, script: str, *args: str, service: str = "dashboard") -> str:
        """Run ``script`` with the image's Python in ``service``, on the compose network."""
        return self.compose("exec", "-T", service, "python", "-", *args,
                            stdin=script.encode(), timeout=300).stdout.decode()

    def topic(self, name: str = "orders") -> list[tuple[int, int, str | None]]:
        """Every message of topic ``name`` up to its end now: (partition, offset, order id or None)."""
        return [tuple(message) for message in json.loads(self.python(READ_TOPIC, name))]

    def containers(self) -> list[str]:
        return subprocess.run(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()


def first_time(stack: Stack, query: str) -> datetime | None:
    rows = stack.sql(query)
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None


def record_timing(name: str, seconds: float) -> None:
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[name] = round(seconds, 1)
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The stack, up from empty volumes (its secrets made anew); removed at the end."""
    env = {**os.environ, "ORDER_SIMULATOR": "on"}  # a demo's orders: no point of sale posts here
    stack = Stack(env)
    stack.compose("down", "--volumes", "--remove-orphans")
    started = time.time()
    stack.up()
    try:
        first_order = wait_for("the first stored order", lambda: first_time(
            stack, "SELECT min(ingested_at) FROM orders"), timeout=900)
        record_timing("up_to_first_stored_order_s", first_order.timestamp() - started)
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", check=False)


Message = tuple[int, int, "str | None"]


def landed(stack: Stack) -> tuple[set[str], set[tuple[int, int]]]:
    """The stored orders' ids (and cancellations' and refunds', as ``event:`` and their id), and the
    rejected messages' (partition, offset) in the orders topic."""
    stored = {row[0] for row in stack.sql("SELECT order_id FROM orders")}
    stored |= {"event:" + row[0] for row in stack.sql("SELECT event_id FROM order_events")}
    rejected = {(int(p), int(o)) for p, o in stack.sql(
        "SELECT kafka_partition, kafka_offset FROM rejected_orders WHERE topic = 'orders'")}
    return stored, rejected


def read_topic(stack: Stack, at_least: int = 0) -> list[Message]:
    """The orders topic's messages, read again while fewer than ``at_least`` (a read made while
    the brokers start may see none yet, and a reader that gave up is followed by a new one)."""
    def enough():
        try:
            read = stack.topic()
        except AssertionError as failed:  # e.g. a broker just restarted, not yet leading what metadata says
            print(f"reading the orders topic again: {str(failed)[-500:]}", file=sys.stderr)
            return None
        return read if len(read) >= max(at_least, 1) else None

    return wait_for(f"{at_least} or more messages in the orders topic", enough, timeout=180)


def account(stack: Stack, at_least: int = 0, timeout: float = 300) -> list[Message]:
    """Every message in the orders topic now is stored once as an order or recorded once as a
    rejection, never both, and every stored order is a published message. The messages read."""
    messages = read_topic(stack, at_least)
    ids = [order_id for _, _, order_id in messages if order_id]
    assert len(ids) == len(set(ids)), "an order was published twice"

    def every_message_landed():
        stored, rejected = landed(stack)
        missing = [m for m in messages if m[2] not in stored and m[:2] not in rejected]
        return None if missing else (stored, rejected)

    stored, rejected = wait_for("every published message stored or rejected", every_message_landed, timeout)
    both = [m for m in messages if m[2] in stored and m[:2] in rejected]
    assert both == [], f"messages both stored and rejected: {both[:5]}"
    published = {order_id for _, _, order_id in read_topic(stack, len(messages)) if order_id}
    assert stored <= published, f"stored orders never published: {sorted(stored - published)[:5]}"
    return messages


def test_orders_flow_from_the_generator_and_a_load_through_three_brokers_to_postgresql(stack: Stack):
    stack.compose("exec", "-T", "dashboard", "faust", "-A", "restaurant_app", "produce-orders",
                  "--count", str(LOADED_ORDERS), "--rate", "100")
    stack.python(PRODUCE_RAW, "orders", *(value.hex() for value in BAD_MESSAGES))
    messages = account(stack)
    assert len(messages) >= LOADED_ORDERS + len(BAD_MESSAGES)
    bad = {m[:2] for m in messages if m[2] in (None, BAD_ORDER_ID)}
    assert len(bad) == len(BAD_MESSAGES)
    assert landed(stack)[1] == bad, "exactly the bad messages are recorded as rejections"
    # The topic's copies: every partition has three replicas, on the three brokers.
    described = stack.python(KAFKA_LOGIN +
        "import asyncio, os\n"
        "from aiokafka.admin import AIOKafkaAdminClient\n"
        "async def main():\n"
        "    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ['KAFKA_BROKER'], **LOGIN)\n"
        "    await admin.start()\n"
        "    try:\n"
        "        [topic] = await admin.describe_topics(['orders'])\n"
        "        print(sorted({len(p['replicas']) for p in topic['partitions']}))\n"
        "    finally:\n"
        "        await admin.close()\n"
        "asyncio.run(main())\n")
    assert described.strip() == "[3]"


def test_final_minute_reports_come_from_the_spark_cluster(stack: Stack):
    started = datetime.fromisoformat(stack.sql("SELECT min(ingested_at) FROM orders")[0][0])
    final = wait_for("a final minute report", lambda: stack.sql(
        "SELECT period_start, orders, computed_at FROM report_sales WHERE granularity = 'minute'"
        " AND store_id = '' AND final ORDER BY period_start LIMIT 1"), timeout=600)
    record_timing("first_order_to_first_final_report_s",
                  (datetime.fromisoformat(final[0][2]) - started).total_seconds())
    period_start = datetime.fromisoformat(final[0][0])
    counted = stack.sql(
        "SELECT count(*) FROM orders WHERE created_at >= :'start' AND created_at < :'end'",
        start=period_start.isoformat(), end=(period_start + timedelta(minutes=1)).isoformat())
    assert int(final[0][1]) == int(counted[0][0]), "the final report counts every order of its minute"
    # The job ran on the Spark cluster: the master lists the Spark Connect application.
    master = stack.python("import urllib.request; print(urllib.request.urlopen("
                          "'http://127.0.0.1:8080/json/', timeout=10).read().decode())",
                          service="spark-master")
    apps = json.loads(master)
    assert any(app["name"] == "restaurant-sales-spark-connect" for app in apps["activeapps"])
    assert apps["aliveworkers"] >= 1


def test_the_dashboard_answers_on_127_0_0_1_only(stack: Stack):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{DASHBOARD}/", timeout=10)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(logged_in(stack, f"{DASHBOARD}/", token="not-the-token"), timeout=10)
    assert wrong.value.code == 401
    with urllib.request.urlopen(logged_in(stack, f"{DASHBOARD}/"), timeout=10) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()
    with urllib.request.urlopen(f"{DASHBOARD}/health", timeout=10) as response:
        assert response.status == 200
    published = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", *stack.containers()],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    bindings = [binding for line in published for ports in json.loads(line).values() if ports
                for binding in ports]
    assert bindings, "the dashboard's port is published"
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}
    assert {binding["HostPort"] for binding in bindings} == {"6066"}


def test_the_replica_serves_the_reports(stack: Stack):
    assert stack.sql("SELECT pg_is_in_recovery()", service="postgres-replica") == [["t"]]
    [[start, end]] = stack.sql(
        "SELECT min(period_start), max(period_start) + interval '1 minute' FROM report_sales"
        " WHERE granularity = 'minute' AND store_id = ''", service="postgres-replica")
    query = urlencode({"from": datetime.fromisoformat(start).isoformat(),
                       "to": datetime.fromisoformat(end).isoformat()})
    with urllib.request.urlopen(logged_in(stack, f"{DASHBOARD}/reports?{query}"), timeout=30) as response:
        answered = json.load(response)["reports"]
    on_replica = stack.sql(
        "SELECT count(*) FROM report_sales WHERE granularity = 'minute' AND store_id = ''"
        " AND period_start >= :'start' AND period_start < :'end'",
        service="postgres-replica", start=start, end=end)
    assert answered and len(answered) == int(on_replica[0][0])
    # The dashboard's worker holds connections to the replica (its reads go there).
    dashboard_ip = subprocess.run(
        ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         f"{PROJECT}-dashboard-1"], capture_output=True, text=True, check=True).stdout.strip()
    clients = {row[0] for row in stack.sql(
        "SELECT host(client_addr) FROM pg_stat_activity WHERE datname = 'restaurant'"
        " AND client_addr IS NOT NULL", service="postgres-replica")}
    assert dashboard_ip in clients


KAFKA_DOORS = """
import asyncio, json, os, pathlib, socket, ssl, struct
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code
from restaurant_app.kafka_security import KafkaSecurity
from restaurant_app.settings import Settings

SERVERS = os.environ["KAFKA_BROKER"]
CA = os.environ["KAFKA_SSL_CAFILE"]
worker = Settings.from_env().kafka_security
wrong = pathlib.Path(os.environ["DATA_DIR"], "wrong.password")
with open(wrong, "w") as file:
    file.write("not-the-password")

async def admin_call(options, call):
    admin = AIOKafkaAdminClient(bootstrap_servers=SERVERS, request_timeout_ms=20000, **options)
    try:
        await admin.start()
        await call(admin)
        return "ok"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await admin.close()

def describe(admin):
    return admin.describe_topics(["orders"])

async def create_topic(admin):
    response = await admin.create_topics([NewTopic("intruder", 1, 3)])
    [(_, code, *_)] = response.topic_errors  # the broker answers, with an error code per topic
    if code:
        raise for_code(code)()

def controller_without_certificate():
    # An ApiVersions request, over TLS that trusts the CA but shows no client certificate.
    body = struct.pack(">hhih", 18, 0, 1, 1) + b"x"
    context = ssl.create_default_context(cafile=CA)
    try:
        with context.wrap_socket(socket.create_connection(("kafka-1", 9093), 10),
                                 server_hostname="kafka-1") as tls:
            tls.sendall(struct.pack(">i", len(body)) + body)
            return "ok" if tls.recv(4) else "closed"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__

async def main():
    system_ca = KafkaSecurity("SASL_SSL", worker.sasl_mechanism, "worker", worker.sasl_password_file)
    wrong_password = KafkaSecurity("SASL_SSL", worker.sasl_mechanism, "worker", wrong, worker.ssl_cafile)
    results = {
        "plaintext": await admin_call({}, describe),
        "tls without a login": await admin_call(
            {"security_protocol": "SSL", "ssl_context": ssl.create_default_context(cafile=CA)}, describe),
        "wrong password": await admin_call(wrong_password.client_options(), describe),
        "server not verified": await admin_call(system_ca.client_options(), describe),
        "worker": await admin_call(worker.client_options(), describe),
        "worker creates a topic of its own": await admin_call(
            worker.client_options(), create_topic),
        "controller without a certificate": controller_without_certificate(),
    }
    print(json.dumps(results))

asyncio.run(main())
"""
"""Every way in to Kafka from a worker's container: each result is ``ok`` or the error's name."""


def test_kafka_lets_in_only_the_right_login_over_verified_tls_and_its_acls_hold(stack: Stack):
    results = json.loads(stack.python(KAFKA_DOORS))
    assert results.pop("worker") == "ok"
    assert results.pop("worker creates a topic of its own") == "TopicAuthorizationFailedError"
    assert results.pop("controller without a certificate") != "ok"
    assert all(result not in ("ok", "") for result in results.values()), results


POSTGRES_DOORS = """
import json
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from restaurant_app.settings import Settings

settings = Settings.from_env()

def attempt(conninfo, statement="SELECT count(*) FROM orders"):
    try:
        with psycopg.connect(conninfo, connect_timeout=15, autocommit=True) as conn:
            conn.execute(statement).fetchall()
            return "ok"
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).rsplit('failed: ', 1)[-1]}"

def changed(url, **params):
    return make_conninfo(url, **params)

web, replica = settings.web_database_url, settings.reports_database_url
ingest = settings.ingest_database_url or settings.database_url  # the login worker.py stores with
assert "restaurant_ingest@" in ingest, "the workers log in as restaurant_ingest"
print(json.dumps({
    "web": attempt(web),
    "web on the replica": attempt(replica),
    "web without tls": attempt(changed(web, sslmode="disable")),
    "web without tls on the replica": attempt(changed(replica, sslmode="disable")),
    "web without a password": attempt(changed(web, passfile="/dev/null")),
    "web with a wrong password": attempt(changed(web, passfile="/dev/null", password="not-the-password")),
    "web trusting the system's CAs": attempt(changed(web, sslrootcert="system")),
    "web writes": attempt(web, "DELETE FROM orders"),
    "ingest creates a table": attempt(ingest, "CREATE TABLE intruder (x int)"),
    "ingest reads a server file": attempt(ingest, "SELECT pg_read_file('/etc/passwd')"),
    "reports drops a table": attempt(settings.report_job_database_url, "DROP TABLE orders"),
}))
"""
"""Every way in to the primary and the replica from a worker's container."""


def test_postgresql_takes_only_verified_tls_and_each_role_only_its_own_work(stack: Stack):
    results = json.loads(stack.python(POSTGRES_DOORS))
    assert results.pop("web") == results.pop("web on the replica") == "ok"
    for denied in ("web writes", "ingest creates a table", "ingest reads a server file",
                   "reports drops a table"):
        assert results.pop(denied).startswith("InsufficientPrivilege: "), denied
    refused = {  # the reason PostgreSQL or libpq gives
        "web without tls": "no pg_hba.conf entry", "web without tls on the replica": "no pg_hba.conf entry",
        "web without a password": "no password supplied",
        "web with a wrong password": "password authentication failed",
        "web trusting the system's CAs": "certificate verify failed"}
    for attempt, reason in refused.items():
        assert results[attempt].startswith("OperationalError: ") and reason in results[attempt], attempt


SPARK_CONNECT_ATTEMPT = """
from pyspark.sql import SparkSession
from spark_reports.session import CONNECT_RETRIES

def spark_connect(remote):
    try:
        spark = SparkSession.builder.remote(remote).create()
        spark.client.set_retry_policies([CONNECT_RETRIES])
        try:
            return "ok" if spark.range(3).count() == 3 else "wrong answer"
        finally:
            spark.stop()
    except Exception as exc:
        return type(exc).__name__
"""
"""``spark_connect(remote)``: a Spark Connect session counts to 3: "ok", or the error's class."""

SPARK_CONNECT_DOORS = SPARK_CONNECT_ATTEMPT + """
import json, os, socket
from restaurant_app.settings import Settings

with_token = Settings.from_env().spark_remote
without = os.environ["SPARK_REMOTE"]  # sc://spark-connect:15443/;use_ssl=true

def server_port():
    try:
        socket.create_connection(("spark-connect", 15002), 10).close()
        return "ok"
    except OSError as exc:
        return type(exc).__name__

print(json.dumps({
    "token over tls": spark_connect(with_token),
    "no token": spark_connect(without),
    "wrong token": spark_connect(without + ";token=not-the-token"),
    "no tls": spark_connect("sc://spark-connect:15443"),
    "the server's own port": server_port(),
}))
"""
"""Every way in to Spark Connect from a worker's container."""


def test_spark_connect_takes_only_its_token_and_only_over_tls(stack: Stack):
    results = json.loads(stack.python(SPARK_CONNECT_DOORS))
    assert results.pop("token over tls") == "ok"
    assert results.pop("the server's own port") == "ConnectionRefusedError"  # 127.0.0.1 only
    assert all(result not in ("ok", "wrong answer") for result in results.values()), results


SPARK_INTRUDER = """
import sys
from pyspark.sql import SparkSession

def cluster_secret():
    with open("/run/restaurant-secrets/spark-cluster.properties") as file:
        return dict(line.split("=", 1) for line in file.read().splitlines())["spark.authenticate.secret"]

settings = {
    "no-secret": {},
    "wrong-secret": {"spark.authenticate": "true", "spark.authenticate.secret": "x" * 64,
                     "spark.network.crypto.enabled": "true"},
    "no-encryption": {"spark.authenticate": "true", "spark.authenticate.secret": cluster_secret(),
                      "spark.network.crypto.enabled": "false"},
}[sys.argv[1]]
builder = SparkSession.builder.master("spark://spark-master:7077").appName("intruder-" + sys.argv[1])
for key, value in settings.items():
    builder = builder.config(key, value)
builder.getOrCreate().range(1).count()
print("RAN ON THE CLUSTER", flush=True)
"""
"""A Spark application that tries the master without the cluster's secret, with a wrong one, or
with the right one but unencrypted; it says so if it ever runs."""

SPARK_REFUSALS = {"no-secret": "Unexpected challenge message from client",
                  "wrong-secret": "Authentication failed for client",
                  "no-encryption": "Unexpected challenge message from client"}
"""How the master's log (AuthRpcHandler) gives each intruder's refusal, with its address."""


def container_ip(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
        capture_output=True, text=True, check=True).stdout.strip()


def container_log(name: str, since: str = "") -> str:
    logs = subprocess.run(["docker", "logs", *(["--since", since] if since else []), name],
                          capture_output=True, text=True, check=False)
    return logs.stdout + logs.stderr


def test_the_spark_master_refuses_applications_without_the_secret_or_without_encryption(stack: Stack):
    master = f"{PROJECT}-spark-master-1"
    started = datetime.now(UTC).isoformat()
    names = {case: f"{PROJECT}-intruder-{case}" for case in SPARK_REFUSALS}
    try:
        for case, name in names.items():  # together, each in its own container on the network
            subprocess.run(
                ["docker", "run", "--detach", "--name", name, "--network", PROJECT, "--workdir",
                 "/var/lib/restaurant", "--volume", f"{PROJECT}_spark-secrets:{SECRETS_AT}:ro",
                 "restaurant-sales-pipeline:local", "python", "-c", SPARK_INTRUDER, case],
                check=True, capture_output=True, timeout=120)
        addresses = {case: container_ip(name) for case, name in names.items()}

        def refused() -> list[str] | None:
            lines = container_log(master, started).splitlines()
            found = [next((line for line in lines if SPARK_REFUSALS[case] in line and f"/{ip}:" in line), "")
                     for case, ip in addresses.items()]
            return found if all(found) else None

        wait_for("the master's refusal of each intruder", refused, timeout=300, every=5)
        apps = json.loads(stack.python("import urllib.request; print(urllib.request.urlopen("
                                       "'http://127.0.0.1:8080/json/', timeout=10).read().decode())",
                                       service="spark-master"))
        outputs = {case: container_log(name) for case, name in names.items()}
    finally:
        subprocess.run(["docker", "rm", "--force", *names.values()], capture_output=True, check=False)
    assert not {app["name"] for app in apps["activeapps"] + apps["completedapps"]} & {
        f"intruder-{case}" for case in names}
    assert all("RAN ON THE CLUSTER" not in output for output in outputs.values())
    # The worker and Spark Connect came in through the same authentication, which encrypts.
    assert "Authorization successful for client" in container_log(master)


SPARK_PORTS = """
import json, socket

def connect(host, port):
    try:
        socket.create_connection((host, port), 10).close()
        return "ok"
    except OSError as exc:
        return type(exc).__name__

print(json.dumps({f"{host}:{port}": connect(host, port) for host, port in [
    ("spark-master", 7077), ("spark-master", 8080), ("spark-master", 6066),
    ("spark-worker", 8081), ("spark-connect", 4040)]}))
"""
"""The Spark ports from a worker's container: the master's RPC port, and the web UIs and the
REST submission server, which must not be open on the network."""

LISTENING = """
import json, psutil
print(json.dumps(sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections("tcp")
                         if c.status == psutil.CONN_LISTEN and not c.laddr.ip.startswith("127.")})))
"""
"""The addresses a container listens on beyond its loopback."""


def test_the_spark_web_uis_and_rest_server_are_closed_to_the_network(stack: Stack):
    ports = json.loads(stack.python(SPARK_PORTS))
    assert ports.pop("spark-master:7077") == "ok"
    assert ports == dict.fromkeys(ports, "ConnectionRefusedError"), ports
    master_ip = container_ip(f"{PROJECT}-spark-master-1")
    assert json.loads(stack.python(LISTENING, service="spark-master")) == [f"{master_ip}:7077"]


READ_SECRETS = """
import json, pathlib
found = []
for path in pathlib.Path("/made").iterdir():
    text = path.read_text()
    if path.suffix in (".password", ".pgpass") or path.name.endswith("token"):
        found += [line.rsplit(":", 1)[-1] for line in text.split()]
    elif path.name.endswith(".properties"):
        found += [line.split("=", 1)[1] for line in text.splitlines()
                  if line.split("=")[0].endswith((".secret", ".token"))]
    elif "PRIVATE KEY" in text:  # a line of each key
        found.append(text.split("PRIVATE KEY-----")[1].split()[0])
print(json.dumps(sorted(set(found))))
"""
"""Every secret `secrets` made: passwords, tokens, the cluster's secret and a line of each key."""


def in_made_secrets(script: str, *args: str):
    """What ``script`` prints (JSON), run as root beside the volume of everything `secrets` made, at /made."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--user", "root", "--entrypoint", "python",
         "--volume", f"{PROJECT}_made-secrets:/made:ro", "restaurant-sales-pipeline:local",
         "-c", script, *args],
        capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def made_secrets() -> list[str]:
    return in_made_secrets(READ_SECRETS)


def test_no_secret_in_any_log_page_or_docker_inspect(stack: Stack):
    found = made_secrets()
    assert len(found) >= 12 and all(len(secret) >= 16 for secret in found), len(found)
    logs = stack.compose("logs", "--no-color", timeout=300).stdout.decode(errors="replace")
    inspected = subprocess.run(["docker", "inspect", *stack.containers()],
                               capture_output=True, text=True, check=True).stdout
    texts = {"docker compose logs": logs, "docker inspect": inspected}
    for page in ("/health", "/metrics", "/stats/"):
        with urllib.request.urlopen(logged_in(stack, DASHBOARD + page), timeout=30) as response:
            texts[page] = response.read().decode(errors="replace")
    leaks = [(where, secret[:4] + "…") for where, text in texts.items() for secret in found if secret in text]
    assert leaks == []
    assert "spark.connect.authenticate.token" not in texts["docker inspect"]


READ_PARTITIONS = """
import re, sys, urllib.request
for name in sys.argv[1:]:
    text = urllib.request.urlopen(f"http://{name}:6066/metrics", timeout=10).read().decode()
    print(name, *sorted(set(re.findall(r'restaurant_consumer_lag_messages\\{[^}]*partition="(\\d+)"', text))))
"""
"""Each worker's /metrics, read on the network: the orders partitions it reads (the lag gauge's)."""


def workers(stack: Stack) -> list[str]:
    names = stack.compose("ps", "--format", "{{.Name}}", "dashboard", "worker").stdout.decode()
    return sorted(names.split())


def partitions_read(stack: Stack) -> dict[str, set[int]]:
    lines = stack.python(READ_PARTITIONS, *workers(stack)).splitlines()
    return {words[0]: {int(p) for p in words[1:]} for words in map(str.split, lines)}


def logged_since(container: str, since: str, text: str) -> bool:
    logs = subprocess.run(["docker", "logs", "--since", since, container],
                          capture_output=True, text=True, check=True)
    return text in logs.stdout + logs.stderr


def test_scaled_workers_share_the_partitions_with_one_generator_and_one_report_launcher(stack: Stack):
    stack.up("--scale", "worker=3", "--wait", "--wait-timeout", "600")
    assert len(workers(stack)) == 4

    def shared():
        read = partitions_read(stack)
        everyone = [p for partitions in read.values() for p in partitions]
        return read if all(read.values()) and sorted(everyone) == list(range(6)) else None

    read = wait_for("the 6 partitions shared by the 4 workers, each read by one", shared, timeout=300)
    assert len(read) == 4
    settled = datetime.now(UTC).isoformat()
    wait_for("a report run after the workers settled", lambda: any(
        logged_since(name, settled, "Report run ") for name in workers(stack)), timeout=600, every=10)
    generators = [name for name in workers(stack) if logged_since(name, settled, "new order(s) on topic")]
    launchers = [name for name in workers(stack) if logged_since(name, settled, "Report run ")]
    assert len(generators) == 1 and generators == launchers, (generators, launchers)
    account(stack)
    stack.up("--scale", "worker=1", "--wait", "--wait-timeout", "600")


def under_load(stack: Stack, count: int, rate: int) -> subprocess.Popen:
    """`produce-orders` publishing ``count`` orders at ``rate`` per second, in the background."""
    return subprocess.Popen(
        ["docker", "compose", "exec", "-T", "dashboard", "faust", "-A", "restaurant_app",
         "produce-orders", "--count", str(count), "--rate", str(rate)],
        cwd=PROJECT_ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(load: subprocess.Popen) -> None:
    output, _ = load.communicate(timeout=600)
    assert load.returncode == 0, f"produce-orders failed:\n{output[-2000:]}"


def test_a_broker_killed_under_load_and_started_again_loses_and_duplicates_nothing(stack: Stack):
    before = len(read_topic(stack))
    load = under_load(stack, count=1500, rate=50)
    time.sleep(10)
    subprocess.run(["docker", "kill", f"{PROJECT}-kafka-2-1"], check=True, capture_output=True)
    time.sleep(20)
    subprocess.run(["docker", "start", f"{PROJECT}-kafka-2-1"], check=True, capture_output=True)
    finished(load)
    messages = account(stack, at_least=before + 1500)
    assert len(messages) >= before + 1500


def test_the_primary_postgresql_stopped_for_30_s_loses_nothing(stack: Stack):
    before = len(read_topic(stack))
    load = under_load(stack, count=1500, rate=25)
    time.sleep(10)
    subprocess.run(["docker", "stop", f"{PROJECT}-postgres-1"], check=True, capture_output=True)
    time.sleep(30)
    subprocess.run(["docker", "start", f"{PROJECT}-postgres-1"], check=True, capture_output=True)
    finished(load)
    messages = account(stack, at_least=before + 1500, timeout=600)
    assert len(messages) >= before + 1500


SESSION_TIMEOUT_S = 60
"""Faust's default Kafka consumer session timeout (broker_session_timeout), which the compose file keeps."""


def generators_since(stack: Stack, since: str) -> list[str]:
    """The workers that placed generated orders since ``since`` (an ISO 8601 time)."""
    return [name for name in workers(stack) if logged_since(name, since, "new order(s) on topic")]


def one_generator(stack: Stack, since: str) -> list[str] | None:
    generators = generators_since(stack, since)
    return generators if len(generators) == 1 else None


def test_the_generating_worker_cut_off_the_network_hands_over_and_nothing_is_doubled(stack: Stack):
    started = datetime.now(UTC).isoformat()
    [leader] = wait_for("one generating worker", lambda: one_generator(stack, started),
                        timeout=120, every=5)
    cut = datetime.now(UTC).isoformat()
    subprocess.run(["docker", "network", "disconnect", PROJECT, leader], check=True, capture_output=True)
    try:
        time.sleep(SESSION_TIMEOUT_S + 20)
        wait_for("another worker generating", lambda: [
            name for name in generators_since(stack, cut) if name != leader] or None, timeout=180, every=5)
    finally:
        alias = "dashboard" if "dashboard" in leader else "worker"
        subprocess.run(["docker", "network", "connect", "--alias", alias, PROJECT, leader],
                       check=True, capture_output=True)
    time.sleep(SESSION_TIMEOUT_S)
    settled = datetime.now(UTC).isoformat()
    time.sleep(30)  # three ticks of the generator (every 10 s by default)
    # One generator again; which one is the group's choice (in the runs here it stayed with the
    # successor once and went back to the worker that returned once).
    assert len(generators_since(stack, settled)) == 1, "one worker generates at a time"
    account(stack, timeout=600)


ROTATED_DOORS = KAFKA_LOGIN + SPARK_CONNECT_ATTEMPT + """
import asyncio, json, os, pathlib
import psycopg
from psycopg.conninfo import make_conninfo
from aiokafka.admin import AIOKafkaAdminClient
from restaurant_app.kafka_security import KafkaSecurity
from restaurant_app.settings import Settings

settings = Settings.from_env()
worker, web = settings.kafka_security, settings.web_database_url
kept = {name: pathlib.Path(os.environ["DATA_DIR"], "old-" + name) for name in ("worker.password", "ca.pem")}
for name, path in kept.items():
    path.write_text(OLD[name])

async def kafka(security):
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BROKER"], request_timeout_ms=20000,
                                **security.client_options())
    try:
        await admin.start()
        await admin.describe_topics(["orders"])
        return "ok"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await admin.close()

def postgres(**params):
    try:
        with psycopg.connect(make_conninfo(web, **params), connect_timeout=15) as conn:
            conn.execute("SELECT 1")
            return "ok"
    except psycopg.Error as exc:
        return str(exc)

mechanism = worker.sasl_mechanism
results = {
    "kafka, the new password": asyncio.run(kafka(worker)),
    "kafka, the old password": asyncio.run(kafka(KafkaSecurity(
        "SASL_SSL", mechanism, "worker", kept["worker.password"], worker.ssl_cafile))),
    "kafka, trusting the old CA": asyncio.run(kafka(KafkaSecurity(
        "SASL_SSL", mechanism, "worker", worker.sasl_password_file, kept["ca.pem"]))),
    "postgres, the new password": postgres(),
    "postgres, the old password": postgres(passfile="/dev/null", password=OLD["restaurant_web.password"]),
    "postgres, the superuser's old password": postgres(user="postgres", passfile="/dev/null",
                                                       password=OLD["postgres.password"]),
    "postgres, trusting the old CA": postgres(sslrootcert=str(kept["ca.pem"])),
    "spark connect, the old token": spark_connect(
        os.environ["SPARK_REMOTE"] + ";token=" + OLD["spark-connect-token"]),
}
for path in kept.values():
    path.unlink()
print(json.dumps(results))
"""
"""From a worker's container after a rotation: the new secrets let in, the old ones (``OLD``) not."""

ROTATED_FILES = ("worker.password", "ca.pem", "restaurant_web.password", "postgres.password",
                 "spark-connect-token", "dashboard-token", "spark-auth.properties")
"""Secrets that ``--rotate`` changes, which the rotation test tries again afterwards."""


def made_files(*names: str) -> dict[str, str]:
    """Files that `secrets` made, by name."""
    return in_made_secrets("import json, pathlib, sys\n"
                           "print(json.dumps({n: pathlib.Path('/made', n).read_text().strip()"
                           " for n in sys.argv[1:]}))", *names)


def test_rotated_secrets_refuse_the_old_ones_and_the_pipeline_goes_on(stack: Stack):
    before = account(stack)
    old = made_files(*ROTATED_FILES)
    stack.compose("run", "--rm", "secrets", "python", "-m", "infra", "compose-secrets", "/secrets",
                  "--rotate")  # as docs/docker-compose.md says
    new = made_files(*ROTATED_FILES)
    assert all(new[name] != old[name] for name in ROTATED_FILES), "every rotated secret is new"
    stack.up("--force-recreate", "--wait", "--wait-timeout", "900")
    recreated = datetime.now(UTC).isoformat()
    setup = stack.compose("logs", "--no-color", "setup").stdout.decode()
    assert "the superuser's new password is set" in setup and "worker, pos have their new passwords" in setup
    stack.__dict__.pop("dashboard_token", None)  # read again: the new one
    assert stack.dashboard_token == new["dashboard-token"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(logged_in(stack, f"{DASHBOARD}/", token=old["dashboard-token"]), timeout=10)
    assert refused.value.code == 401
    with urllib.request.urlopen(logged_in(stack, f"{DASHBOARD}/"), timeout=10) as response:
        assert response.status == 200
    results = json.loads(stack.python(f"OLD = {old!r}\n" + ROTATED_DOORS))  # by stdin, on no command line
    assert results.pop("kafka, the new password") == results.pop("postgres, the new password") == "ok"
    assert results.pop("kafka, the old password") not in ("ok", "")
    assert results.pop("kafka, trusting the old CA") not in ("ok", "")
    assert results.pop("spark connect, the old token") not in ("ok", "wrong answer")
    assert "password authentication failed" in results.pop("postgres, the old password")
    assert "password authentication failed" in results.pop("postgres, the superuser's old password")
    assert "certificate verify failed" in results.pop("postgres, trusting the old CA")
    # The pipeline goes on with the new secrets: orders in and stored, nothing lost, reports made.
    stack.compose("exec", "-T", "dashboard", "faust", "-A", "restaurant_app", "produce-orders",
                  "--count", "100", "--rate", "50")
    after = account(stack, at_least=len(before) + 100, timeout=600)
    assert set(before) <= set(after)
    wait_for("a report run with the new secrets", lambda: stack.sql(
        "SELECT 1 FROM report_sales WHERE computed_at > :'since' LIMIT 1", since=recreated),
        timeout=600, every=10)


def test_down_and_up_again_keeps_every_order_and_report(stack: Stack):
    before = account(stack)
    orders = {row[0] for row in stack.sql("SELECT order_id FROM orders")}
    reports = {tuple(row) for row in stack.sql(
        "SELECT granularity, period_start, store_id, orders FROM report_sales WHERE final")}
    stack.compose("down")
    assert stack.containers() == []
    stack.up("--wait", "--wait-timeout", "600")
    wait_for("the orders after a restart", lambda: orders <= {
        row[0] for row in stack.sql("SELECT order_id FROM orders")}, timeout=300)
    kept = {tuple(row) for row in stack.sql(
        "SELECT granularity, period_start, store_id, orders FROM report_sales WHERE final")}
    assert reports <= kept
    after = account(stack, at_least=len(before))
    assert set(before) <= set(after), "the orders topic kept its messages (the Kafka volumes)"


def test_down_with_volumes_leaves_nothing_behind(stack: Stack):
    stack.compose("down", "--volumes", "--remove-orphans")
    assert stack.containers() == []
    for kind in ("volume", "network"):
        left = subprocess.run(
            ["docker", kind, "ls", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True, text=True, check=True).stdout.split()
        assert left == [], f"{kind}s left behind: {left}"

