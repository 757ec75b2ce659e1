"""The benchmark's own Kafka broker and PostgreSQL server, on free ports in a scratch folder."""

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from infra.kafka import KafkaBroker
from infra.postgres import PostgresServer
from infra.stack import free_port

WORK_DIR = Path(__file__).resolve().parent / ".work"


@dataclass
class BenchStack:
    """The running services and where the bench keeps its files."""

    kafka: KafkaBroker
    postgres: PostgresServer
    home: Path

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    def postgres_process(self) -> psutil.Process:
        """The postmaster; its children are the server's backends and helpers."""
        pid_file = self.postgres.data_dir / "postmaster.pid"
        return psutil.Process(int(pid_file.read_text().split()[0]))

    def kafka_process(self) -> psutil.Process:
        assert self.kafka.process is not None, "Kafka is not running"
        return psutil.Process(self.kafka.process.pid)

    def new_database(self, prefix: str) -> str:
        """Create an empty database and return its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.postgres.create_database(name)
        return self.postgres.url(name)


@contextmanager
def bench_stack(home: Path = WORK_DIR) -> Iterator[BenchStack]:
    """Start Kafka and PostgreSQL on free ports (never `make run`'s) from an empty ``home``.

    Stops them on exit and keeps the logs.
    """
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    kafka = KafkaBroker(home / "kafka", free_port(), free_port(), log_level="WARN")
    postgres = PostgresServer(home / "postgres", free_port())
    kafka.start()
    try:
        postgres.start()
        try:
            _track_commit_timestamps(postgres)
            yield BenchStack(kafka, postgres, home)
        finally:
            postgres.stop()
    finally:
        kafka.stop()


def _track_commit_timestamps(postgres: PostgresServer) -> None:
    """Make PostgreSQL record when each transaction commits, which latency is measured against."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    postgres.stop()
    postgres.start()
