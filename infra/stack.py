"""The services the pipeline needs: those the environment names, or local ones we start."""

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from infra.java import StackError
from infra.kafka import KafkaBroker
from infra.postgres import PostgresServer
from infra.spark_connect import SparkConnectServer
from restaurant_app.settings import settings

log = logging.getLogger("infra")

DATABASE_NAME = "restaurant"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_stack(
    data_dir: Path, kafka_port: int = 9092, postgres_port: int = 5432, spark_port: int = 15002
) -> Iterator[dict[str, str]]:
    """Start Kafka, PostgreSQL and Spark Connect unless ``KAFKA_BROKER`` / ``DATABASE_URL`` /
    ``SPARK_REMOTE`` name them.

    Yields the environment variables that point the app at the services, and
    stops what it started on exit. Data stays in ``data_dir`` between runs.
    """
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if os.environ.get("KAFKA_BROKER"):
            log.info("Using the Kafka broker at %s", os.environ["KAFKA_BROKER"])
        else:
            broker = KafkaBroker(data_dir / "kafka", kafka_port, kafka_port + 1)
            log.info("Starting Apache Kafka (KRaft, one node) on %s ...", broker.bootstrap_servers)
            broker.start()
            stack.callback(_stopping, "Kafka", broker.stop)
            env["KAFKA_BROKER"] = broker.bootstrap_servers
            log.info("Kafka is ready; its log is %s", broker.log_file)
        if os.environ.get("DATABASE_URL"):
            log.info("Using the PostgreSQL named by DATABASE_URL")
        else:
            postgres = PostgresServer(data_dir / "postgres", postgres_port)
            log.info("Starting PostgreSQL on 127.0.0.1:%d ...", postgres_port)
            postgres.start()
            stack.callback(_stopping, "PostgreSQL", postgres.stop)
            postgres.create_database(DATABASE_NAME)
            env["DATABASE_URL"] = postgres.url(DATABASE_NAME)
            log.info("PostgreSQL is ready: %s", env["DATABASE_URL"])
        if os.environ.get("SPARK_REMOTE"):
            log.info("Using the Spark Connect server at %s", os.environ["SPARK_REMOTE"])
        else:
            env.update(_start_spark_connect(stack, data_dir / "spark-connect", spark_port))
        yield env


def _start_spark_connect(stack: ExitStack, home: Path, port: int) -> dict[str, str]:
    """Start the Spark Connect server; if it cannot start, each report run starts its own Spark."""
    server = SparkConnectServer(home, port, timezone=settings.restaurant_timezone,
                                master=settings.spark_master, driver_memory=settings.spark_driver_memory)
    log.info("Starting the Spark Connect server on 127.0.0.1:%d ...", port)
    try:
        server.start()
    except StackError as exc:
        log.error("%s\nThe pipeline runs without it: each report run starts its own Spark.", exc)
        return {}
    stack.callback(_stopping, "the Spark Connect server", server.stop)
    log.info("The Spark Connect server is ready at %s; its log is %s", server.remote, server.log_file)
    return {"SPARK_REMOTE": server.remote}


def _stopping(name: str, stop: object) -> None:
    log.info("Stopping %s ...", name)
    stop()  # type: ignore[operator]
