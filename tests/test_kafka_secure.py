"""A secure Kafka (``KAFKA_SECURE``): SCRAM-SHA-512 logins over TLS, and ACLs, against real clients.

One secure broker serves the module, started as ``make run`` starts it, with its ACLs for the module's names:
clients without a login, with a wrong password or without the CA are refused (aiokafka, kcat);
the point-of-sale user writes orders (Kafka's console producer) but reads nothing; the worker
stores orders from it end to end, and no password shows in a log or an answer.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.__main__ import add_partitions
from infra.certificates import certificate_hosts
from infra.java import classpath
from infra.kafka_broker import KafkaBroker
from infra.kafka_secrets import USERS
from infra.scratch import WorkerProcess, faust_command
from infra.stack import free_port, local_kafka, local_stack
from restaurant_app.java_runtime import java_executable
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity
from restaurant_app.settings import PROJECT_ROOT, Settings
from restaurant_app.traffic import OrderGenerator
from tests.conftest import service_home
from tests.services import fetch, get, outward_address, outward_ipv6_address, query, unique_names, wait_until
from tests.test_admin import admin
from tests.test_orders_api import post

pytestmark = pytest.mark.integration

CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
NAMES = unique_names()


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[tuple[KafkaBroker, dict[str, str]]]:
    """``make run``'s own start of a Kafka with ``KAFKA_SECURE=on`` (SASL_SSL for clients, SSL to
    its controller, the ACLs of NAMES), and the settings it gives its workers. PostgreSQL and
    Spark are named, so that ``local_stack`` starts only Kafka."""
    home, port, host = service_home(), two_free_ports(), outward_address()
    with pytest.MonkeyPatch.context() as env:
        # Reached by another address of this machine, as from another machine (ADVERTISED_HOSTS).
        hosts = ",".join([host, *filter(None, [outward_ipv6_address()])])
        for name, value in {**NAMES, "KAFKA_SECURE": "on", "ADVERTISED_HOSTS": hosts,
                            "SPARK_REMOTE": "sc://127.0.0.1:9",
                            "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}.items():
            env.setenv(name, value)
        env.delenv("KAFKA_BROKER", raising=False)
        try:
            with local_stack(home, Settings.from_env(), kafka_port=port) as worker_settings:
                yield local_kafka(home, port, secure=True, hosts=[host]), worker_settings
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def secure_kafka(secure_stack: tuple[KafkaBroker, dict[str, str]]) -> KafkaBroker:
    return secure_stack[0]


def two_free_ports() -> int:
    """A port on 127.0.0.1 free, with the next one free too (Kafka's clients and its controller)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_make_run_gives_its_workers_a_login_and_keeps_the_secrets_private(
        secure_stack: tuple[KafkaBroker, dict[str, str]]):
    kafka, worker_settings = secure_stack
    secrets = kafka.secrets
    assert worker_settings == {"KAFKA_BROKER": kafka.bootstrap_servers, **secrets.client_env("worker")}
    assert worker_settings["KAFKA_SASL_USERNAME"] == "worker"
    assert secrets.home.stat().st_mode & 0o777 == 0o700
    assert {path.name: path.stat().st_mode & 0o777 for path in secrets.home.iterdir()} == dict.fromkeys(
        ["broker.pem", "admin.password", "worker.password", "pos.password", "admin.properties"], 0o600)
    assert secrets.ca.home.stat().st_mode & 0o777 == 0o700  # make run's one small CA
    assert {path.name: path.stat().st_mode & 0o777 for path in secrets.ca.home.iterdir()} == dict.fromkeys(
        ["ca.pem", "ca.key", "ca.srl"], 0o600)
    assert (kafka.home / "server.properties").stat().st_mode & 0o777 == 0o600


def brokers_seen(kafka: KafkaBroker, security: KafkaSecurity, bootstrap_servers: str = "") -> int:
    return asyncio.run(count_brokers(bootstrap_servers or kafka.bootstrap_servers, timeout=5.0,
                                     security=security))


def test_another_machine_reaches_the_broker_by_its_advertised_address(secure_kafka: KafkaBroker):
    """The certificate names the advertised address (checked by the client, as a host name), and
    the broker listens there, not only on loopback."""
    host = secure_kafka.secrets.advertised_host
    assert {host, "127.0.0.1", "localhost"} <= set(certificate_hosts(secure_kafka.secrets.keystore))
    security = secure_kafka.secrets.client("worker")
    assert security.ssl_context().check_hostname
    assert brokers_seen(secure_kafka, security, f"{host}:{secure_kafka.port}") == 1
    config = (secure_kafka.home / "server.properties").read_text()
    assert f"advertised.listeners=SASL_SSL://{host}:{secure_kafka.port}" in config


def test_an_ipv6_client_reaches_the_broker_too(secure_kafka: KafkaBroker):
    """The broker listens on every interface of both families; its certificate names every one
    of ``ADVERTISED_HOSTS`` (Kafka advertises the first: the IPv4 one here)."""
    address = outward_ipv6_address()
    if address is None:
        pytest.skip("this machine has no IPv6")
    assert address in certificate_hosts(secure_kafka.secrets.keystore)
    security = secure_kafka.secrets.client("worker")
    assert brokers_seen(secure_kafka, security, f"[{address}]:{secure_kafka.port}") == 1


def is_refused(kafka: KafkaBroker, security: KafkaSecurity) -> bool:
    try:
        brokers_seen(kafka, security)
    except KafkaUnavailable:
        return True
    return False


def kcat_metadata(kafka: KafkaBroker, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", "-L", "-b", kafka.bootstrap_servers, "-m", "5", *options],
                          capture_output=True, text=True, timeout=60, check=False)


def java_tool(tool: str, kafka: KafkaBroker, config: Path, *args: str, lines: bytes = b""
              ) -> subprocess.CompletedProcess:
    """Kafka's console producer or consumer (from the Maven jars), logged in by ``config``; its
    output and its log (which Kafka's tools print on standard output) together in ``stdout``."""
    option = "--producer.config" if tool == CONSOLE_PRODUCER else "--consumer.config"
    return subprocess.run([java_executable(), "-Xmx128m", "-cp", classpath(), tool,
                           "--bootstrap-server", kafka.bootstrap_servers, option, str(config), *args],
                          input=lines, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                          check=False)


def test_a_client_without_the_right_login_or_the_ca_is_refused(secure_kafka: KafkaBroker, tmp_path: Path):
    secrets = secure_kafka.secrets
    assert brokers_seen(secure_kafka, secrets.client("worker")) == 1
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    refused = {
        "no login, no TLS": PLAINTEXT,
        "a wrong password": KafkaSecurity("SASL_SSL", sasl_username="worker", sasl_password_file=wrong,
                                          ssl_cafile=secrets.ca_file),
        "an unknown user": KafkaSecurity("SASL_SSL", sasl_username="mallory",
                                         sasl_password_file=secrets.password_file("worker"),
                                         ssl_cafile=secrets.ca_file),
        "the system's CAs only": KafkaSecurity("SASL_SSL", sasl_username="worker",
                                               sasl_password_file=secrets.password_file("worker")),
    }
    assert [case for case, security in refused.items() if not is_refused(secure_kafka, security)] == []
    # librdkafka, another client: refused without a login, and with a wrong password.
    plain = kcat_metadata(secure_kafka)
    assert plain.returncode != 0 and "Metadata for all topics" not in plain.stdout
    wrong_login = kcat_metadata(secure_kafka, "-X", "security.protocol=SASL_SSL",
                                "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=worker",
                                "-X", "sasl.password=not-the-password",
                                "-X", f"ssl.ca.location={secrets.ca_file}")
    assert wrong_login.returncode != 0
    assert "Authentication failed" in wrong_login.stderr


def controller_handshake(kafka: KafkaBroker, certificate: Path | None) -> None:
    """A TLS connection to the controller listener, presenting ``certificate`` (key and chain) or none;
    raises ``ssl.SSLError`` if the controller refuses it."""
    context = ssl.create_default_context(cafile=kafka.secrets.ca_file)
    if certificate is not None:
        context.load_cert_chain(certificate)
    with socket.create_connection(("127.0.0.1", kafka.controller_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"\0\0\0\0")  # an empty request: the controller hangs up, or refuses before
        tls.recv(1)


def test_only_a_broker_certificate_reaches_the_controller(secure_kafka: KafkaBroker):
    with pytest.raises(ssl.SSLError, match=r"BAD_CERTIFICATE|CERTIFICATE_REQUIRED"):
        controller_handshake(secure_kafka, None)
    controller_handshake(secure_kafka, secure_kafka.secrets.keystore)


def test_the_point_of_sale_user_writes_orders_and_nothing_else(secure_kafka: KafkaBroker):
    secrets = secure_kafka.secrets
    pos = secrets.java_properties("pos")
    orders, dead_letters = NAMES["ORDERS_TOPIC"], NAMES["DEAD_LETTER_TOPIC"]
    wrote = java_tool(CONSOLE_PRODUCER, secure_kafka, pos, "--topic", orders,
                      "--producer-property", "acks=all", lines=b'{"not": "an order"}\n')
    assert wrote.returncode == 0, wrote.stdout.decode()[-3000:]
    read = java_tool(CONSOLE_CONSUMER, secure_kafka, pos, "--topic", orders, "--from-beginning",
                     "--max-messages", "1", "--timeout-ms", "15000", "--group", NAMES["APP_ID"])
    assert b"not an order" not in read.stdout
    assert b"TopicAuthorizationException" in read.stdout, read.stdout.decode()[-3000:]
    elsewhere = java_tool(CONSOLE_PRODUCER, secure_kafka, pos, "--topic", dead_letters,
                          "--producer-property", "max.block.ms=10000", lines=b"forged\n")
    assert b"TopicAuthorizationException" in elsewhere.stdout, elsewhere.stdout.decode()[-3000:]
    # The worker may read the orders (its group), not a topic outside its ACLs.
    worker = secrets.java_properties("worker")
    other = java_tool(CONSOLE_CONSUMER, secure_kafka, worker, "--topic", "payroll", "--from-beginning",
                      "--max-messages", "1", "--timeout-ms", "10000", "--group", NAMES["APP_ID"])
    assert b"TopicAuthorizationException" in other.stdout, other.stdout.decode()[-3000:]


def test_the_worker_stores_orders_from_the_secure_broker_and_shows_no_secret(
        secure_stack: tuple[KafkaBroker, dict[str, str]], worker: WorkerProcess, database_url: str):
    secure_kafka, worker_settings = secure_stack
    secrets = secure_kafka.secrets
    worker.env.update(NAMES, **worker_settings)
    worker.start(ready_timeout=120)
    sold = OrderGenerator(seed=24).orders_for_tick(3)
    lines = b"\n".join(order.dumps() for order in sold) + b"\nnot json\n"
    wrote = java_tool(CONSOLE_PRODUCER, secure_kafka, secrets.java_properties("pos"),
                      "--topic", NAMES["ORDERS_TOPIC"], "--producer-property", "acks=all", lines=lines)
    assert wrote.returncode == 0, wrote.stdout.decode()[-3000:]
    loaded = subprocess.run(faust_command("produce-orders", "--count", "5"), cwd=PROJECT_ROOT,
                            env={**os.environ, **worker.env}, capture_output=True, text=True,
                            timeout=180, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    posted = OrderGenerator(seed=25).order()
    status, answer, _ = post(f"{worker.url}/api/orders", posted.dumps(), token=None)
    assert (status, answer) == (202, {"order_id": posted.order_id})
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == len(sold) + 5 + 1,
               timeout=90, message="the orders were not all stored")
    expected = {order.order_id for order in [*sold, posted]}
    stored = {row[0] for row in query(database_url, "SELECT order_id::text FROM orders")}
    assert expected <= stored
    # The malformed message is rejected and published to the dead-letter topic, as the worker.
    wait_until(lambda: query(database_url, "SELECT 1 FROM rejected_orders WHERE raw = 'not json'"
                                           " AND dead_lettered_at IS NOT NULL"),
               message="the malformed message was not dead-lettered")
    status_report = admin(worker.env, "status")
    assert "Kafka 127.0.0.1" in status_report.stdout and ": 1 broker(s)" in status_report.stdout
    assert status_report.stdout.count("keeps messages 7 day(s)") == 2, status_report.stdout
    health_status, health = get(f"{worker.url}/health")
    assert health_status == 200 and health["kafka"] == {"ok": True, "brokers": 1}
    dashboard_status, dashboard = get(f"{worker.url}/api/dashboard/health")
    assert dashboard_status == 200 and dashboard["kafka"] == {"ok": True, "brokers": 1}
    answers = [fetch(f"{worker.url}{path}")[1]
               for path in ("/health", "/stats/", "/metrics", "/api/dashboard/health")]
    logs = [worker.log_file.read_bytes(), secure_kafka.log_file.read_bytes(),
            loaded.stdout.encode(), loaded.stderr.encode(), status_report.stdout.encode(),
            status_report.stderr.encode()]
    for user in USERS:
        password = secrets.password(user).encode()
        assert not any(password in text for text in answers + logs), f"{user}'s password was shown"



def test_a_rotated_password_replaces_the_old_one(secure_kafka: KafkaBroker):
    secrets = secure_kafka.secrets
    old = secrets.password("pos")
    secrets.rotate("pos", secure_kafka.bootstrap_servers)
    assert secrets.password("pos") != old
    assert secrets.password_file("pos").stat().st_mode & 0o777 == 0o600
    assert brokers_seen(secure_kafka, secrets.client("pos")) == 1
    old_file = secrets.home / "old.password"
    old_file.write_text(old)
    stale = KafkaSecurity("SASL_SSL", sasl_username="pos", sasl_password_file=old_file,
                          ssl_cafile=secrets.ca_file)
    assert is_refused(secure_kafka, stale)


def test_make_run_s_partitions_command_grows_a_topic_as_admin(secure_kafka: KafkaBroker,
                                                                monkeypatch: pytest.MonkeyPatch):
    kafka = secure_kafka
    topic = f"grown-{NAMES['ORDERS_TOPIC']}"
    admin_options = kafka.secrets.client("admin").client_options()

    async def create_and_count(create: bool) -> int:
        client = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, **admin_options)
        await client.start()
        try:
            if create:
                await client.create_topics([NewTopic(topic, 1, 1)])
            [description] = await client.describe_topics([topic])
            return len(description["partitions"])
        finally:
            await client.close()

    asyncio.run(create_and_count(create=True))
    # A new topic's partitions show in the metadata a moment after it is created.
    wait_until(lambda: asyncio.run(create_and_count(create=False)) == 1, timeout=30,
               message="the new topic never showed its one partition")
    for name, value in {"DATA_DIR": str(kafka.secrets.home.parent), "KAFKA_SECURE": "on",
                        "KAFKA_BROKER": kafka.bootstrap_servers, "ORDERS_TOPIC": topic}.items():
        monkeypatch.setenv(name, value)
    assert add_partitions(Settings.from_env(), 3) == 0
    wait_until(lambda: asyncio.run(create_and_count(create=False)) == 3, timeout=30,
               message="the topic did not grow to 3 partitions")


def test_a_point_of_sale_loads_orders_without_the_right_to_create_topics(secure_kafka: KafkaBroker,
                                                                          tmp_path: Path):
    """``produce-orders`` as ``pos`` (write and describe the orders topic, nothing else): it writes
    a topic that exists, and says clearly that it may not create one that does not."""
    kafka, orders = secure_kafka, NAMES["ORDERS_TOPIC"]
    admin_options = kafka.secrets.client("admin").client_options()

    async def create_orders_topic() -> None:
        client = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, **admin_options)
        await client.start()
        try:
            if orders not in await client.list_topics():
                await client.create_topics([NewTopic(orders, 1, 1)])
        finally:
            await client.close()

    def produce_as_pos(topic: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **NAMES, **kafka.secrets.client_env("pos"), "ORDERS_TOPIC": topic,
               "KAFKA_BROKER": kafka.bootstrap_servers, "DATA_DIR": str(tmp_path)}
        return subprocess.run(faust_command("produce-orders", "--count", "3"), cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=180, check=False)

    asyncio.run(create_orders_topic())
    loaded = produce_as_pos(orders)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert f"Published 3 order(s) to '{orders}'" in loaded.stdout + loaded.stderr
    missing = produce_as_pos(f"missing-{orders}")
    assert missing.returncode != 0
    said = f"The topic 'missing-{orders}' does not exist (or this login (pos) may not see it)"
    assert said in missing.stderr
    assert "Start a worker first" in missing.stderr
    assert kafka.secrets.password("pos") not in missing.stdout + missing.stderr
