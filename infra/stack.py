"""The services the pipeline needs: those the environment names, or local ones we start."""

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from infra.kafka_broker import KafkaBroker
from infra.postgres import PostgresReplica, PostgresServer
from restaurant_app.database import describe

log = logging.getLogger("infra")

DATABASE_NAME = "restaurant"
POSTGRES_PORT = 5432
REPLICA_PORT = 5433


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_postgres(data_dir: Path, port: int = POSTGRES_PORT) -> PostgresServer:
    """The PostgreSQL server of ``make run``, its data and password under ``data_dir``."""
    return PostgresServer(data_dir / "postgres", port)


@contextmanager
def local_stack(
    data_dir: Path, kafka_port: int = 9092, postgres_port: int = POSTGRES_PORT,
    replica_port: int = REPLICA_PORT,
) -> Iterator[dict[str, str]]:
    """Start Kafka and PostgreSQL unless ``KAFKA_BROKER`` / ``DATABASE_URL`` name them, and with
    ``POSTGRES_REPLICA=1`` a streaming replica of that PostgreSQL, where the reports are read.

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
            if os.environ.get("POSTGRES_REPLICA") == "1":
                log.warning("POSTGRES_REPLICA=1 replicates only the PostgreSQL started here; with"
                            " DATABASE_URL set, name your replica in REPORTS_DATABASE_URL instead.")
        else:
            postgres = local_postgres(data_dir, postgres_port)
            log.info("Starting PostgreSQL on 127.0.0.1:%d ...", postgres_port)
            postgres.start()
            stack.callback(_stopping, "PostgreSQL", postgres.stop)
            postgres.create_database(DATABASE_NAME)
            env["DATABASE_URL"] = postgres.url(DATABASE_NAME)
            log.info("PostgreSQL is ready: %s; its password is in %s",
                     describe(env["DATABASE_URL"]), postgres.password_file)
            if os.environ.get("POSTGRES_REPLICA") == "1":
                replica = PostgresReplica(data_dir / "postgres-replica", replica_port, postgres)
                env["REPORTS_DATABASE_URL"] = _start_replica(stack, replica)
        yield env


def _start_replica(stack: ExitStack, replica: PostgresReplica) -> str:
    """Start the replica, to be stopped before its primary; return the URL of its database."""
    log.info("Starting a read replica of PostgreSQL on 127.0.0.1:%d ...", replica.port)
    replica.start()
    stack.callback(_stopping, "the PostgreSQL replica", replica.stop)
    url = replica.url(DATABASE_NAME)
    log.info("The replica is streaming from the primary; reports are read from %s", describe(url))
    return url


def _stopping(name: str, stop: object) -> None:
    log.info("Stopping %s ...", name)
    stop()  # type: ignore[operator]
