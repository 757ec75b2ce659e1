"""The multi-machine recipe as a user starts it: ``ADVERTISED_HOSTS=… KAFKA_NODES=3 python -m infra run``,
reached from "another machine" (an address of this one other than loopback) with only the files
the recipe says to copy: the CA, the point of sale's Kafka password, a role's database password
and the Spark Connect token.

Orders published as ``pos`` through the secure 3-node cluster (SCRAM over TLS, three copies, two in
sync for a write) are stored by ``make run``'s worker; read back through PostgreSQL's TLS front;
and a report run from outside reads them through the Spark Connect TLS front, whose server reads
PostgreSQL by JDBC through the same front with ``sslmode=verify-full``. No secret shows in the log.
"""

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from infra.process import spawn, terminate
from infra.stack import free_port, local_kafka_secrets
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import OrderGenerator
from tests.services import admin, outward_address, run_report_job, wait_until
from tests.test_scale_out import answers

pytestmark = pytest.mark.integration

SERVICES = ("KAFKA_BROKER", "DATABASE_URL", "REPORTS_DATABASE_URL", "WEB_DATABASE_URL",
            "INGEST_DATABASE_URL", "REPORT_JOB_DATABASE_URL", "SPARK_REMOTE", "SPARK_MASTER",
            "SPARK_CLUSTER", "POSTGRES_REPLICA", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "POSTGRES_CA_FILE",
            "GENERATOR_SEED")
"""What would point ``make run`` at services of ours: unset, it starts its own."""
ORDERS = 6


def publish_as_point_of_sale(data_dir: Path, bootstrap_servers: str, orders: list) -> None:
    """Publish ``orders`` with acks=all as ``pos``, trusting the copied CA."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                    request_timeout_ms=60_000,
                                    **local_kafka_secrets(data_dir).client("pos").client_options())
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send("orders", o.dumps(), key=o.order_id.encode())
                                   for o in orders])
        finally:
            await producer.stop()

    asyncio.run(send())


def orders_topic(data_dir: Path, bootstrap_servers: str) -> dict | None:
    """The orders topic as Kafka describes it to ``admin``; None while it has no partitions."""
    [topic] = admin(bootstrap_servers, lambda client: client.describe_topics(["orders"]),
                    local_kafka_secrets(data_dir).client("admin"))
    return topic if topic["partitions"] else None


def role_url(data_dir: Path, role: str, host: str, port: int) -> str:
    """``role``'s login by PostgreSQL's TLS front, as a worker elsewhere gets it (the recipe's URL)."""
    password = quote((data_dir / "postgres" / "roles" / role).read_text().strip(), safe="")
    return (f"postgresql://{role}:{password}@{host}:{port}/restaurant"
            f"?sslmode=verify-full&sslrootcert={data_dir / 'ca' / 'ca.pem'}")


def stored(url: str, ids: set[str]) -> int:
    with psycopg.connect(url, connect_timeout=20) as conn:
        rows = conn.execute("SELECT order_id::text FROM orders WHERE order_id::text = ANY(%s)", (list(ids),))
        return len(rows.fetchall())


def secrets_of(data_dir: Path) -> list[str]:
    """Every secret ``make run`` made: passwords, the token, keys."""
    files = [*(data_dir / "kafka-secrets").glob("*.password"), *(data_dir / "postgres" / "roles").iterdir(),
             data_dir / "postgres" / "password", data_dir / "spark-connect" / "token"]
    return [path.read_text().strip() for path in files]


def test_the_multi_machine_recipe_end_to_end(tmp_path: Path):
    host, data_dir = outward_address(), tmp_path / "data"
    kafka_port, postgres_port, spark_port, web_port = free_port(6), free_port(3), free_port(2), free_port()
    env = {**{name: value for name, value in os.environ.items() if name not in SERVICES},
           "ADVERTISED_HOSTS": host, "KAFKA_NODES": "3", "DATA_DIR": str(data_dir),
           "KAFKA_PORT": str(kafka_port), "POSTGRES_PORT": str(postgres_port),
           "SPARK_CONNECT_PORT": str(spark_port), "WEB_PORT": str(web_port),
           "ORDER_SIMULATOR": "off", "REPORT_INTERVAL_SECONDS": "3600", "SPARK_DRIVER_MEMORY": "512m"}
    run = spawn([sys.executable, "-m", "infra", "run"], tmp_path / "run.log", env=env, cwd=PROJECT_ROOT)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{web_port}/health") or run.poll() is not None,
                   timeout=420, message="make run's worker never answered")
        assert run.poll() is None, (tmp_path / "run.log").read_text()[-4000:]
        brokers = ",".join(f"{host}:{kafka_port + 2 * n}" for n in range(3))
        # The worker made the orders topic (a point of sale may not); the three brokers formed one
        # cluster: each partition has a copy on each.
        topic = wait_until(lambda: orders_topic(data_dir, brokers), timeout=120, message="no orders topic")
        assert {len(p["replicas"]) for p in topic["partitions"]} == {3}
        orders = [OrderGenerator(seed=2403).order() for _ in range(ORDERS)]
        publish_as_point_of_sale(data_dir, brokers, orders)

        web = role_url(data_dir, "restaurant_web", host, postgres_port + 2)
        ids = {order.order_id for order in orders}
        wait_until(lambda: stored(web, ids) == ORDERS, timeout=120, message="the orders were not stored")

        result = run_report_job(role_url(data_dir, "restaurant_reports", host, postgres_port + 2), env={
            "SPARK_REMOTE": f"sc://{host}:{spark_port + 1}/;use_ssl=true",
            "SPARK_CONNECT_TOKEN_FILE": str(data_dir / "spark-connect" / "token"),
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(data_dir / "ca" / "ca.pem"),
            "SPARK_JDBC_PASSWORD": "send"})
        assert (result["status"], result["orders_read"]) == ("succeeded", ORDERS), result
    finally:
        terminate(run, timeout=150)
    log = (tmp_path / "run.log").read_text()
    assert "Worker 1 stopped (exit code 0)" in log
    assert not [secret for secret in secrets_of(data_dir) if secret in log]
