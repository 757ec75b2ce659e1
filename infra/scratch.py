"""Throw-away services for the tests and the benchmark: Kafka and PostgreSQL on free ports, and workers.

Nothing here touches ``make run``'s ports or data: each stack lives in a folder of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from infra.kafka_broker import GROUP_JOIN_WAIT_MS, KafkaBroker
from infra.postgres import PostgresServer
from infra.process import ChildProcess, spawn, tail
from infra.stack import free_port
from restaurant_app.settings import PROJECT_ROOT

READY_LINE = "Worker]: Ready"
"""What Faust logs once a worker has joined its group and started its agents."""


@dataclass
class ScratchStack:
    """A running Kafka broker and PostgreSQL server, and the folder that holds their data and logs."""

    kafka: KafkaBroker
    postgres: PostgresServer
    home: Path

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    def new_database(self, prefix: str = "test") -> str:
        """Create an empty database and return its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.postgres.create_database(name)
        return self.postgres.url(name)

    def postgres_process(self) -> psutil.Process:
        """The postmaster; its children are the server's backends and helpers."""
        pid_file = self.postgres.data_dir / "postmaster.pid"
        return psutil.Process(int(pid_file.read_text().split()[0]))

    def kafka_process(self) -> psutil.Process:
        assert self.kafka.process is not None, "Kafka is not running"
        return psutil.Process(self.kafka.process.pid)


@contextmanager
def scratch_stack(home: Path, *, kafka_heap: str = "512m", commit_timestamps: bool = False,
                  rebalance_delay_ms: int = GROUP_JOIN_WAIT_MS) -> Iterator[ScratchStack]:
    """Start Kafka and PostgreSQL on free ports in an emptied ``home``; stop them on exit, keep the logs.

    ``commit_timestamps`` makes PostgreSQL record when each transaction commits (for latency).
    ``rebalance_delay_ms``: how long an empty consumer group waits for more members, by default as
    the product's brokers (``GROUP_JOIN_WAIT_MS``); the tests' 0 starts each new group at once.
    """
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    kafka = KafkaBroker(home / "kafka", free_port(), free_port(), heap=kafka_heap, log_level="WARN",
                        rebalance_delay_ms=rebalance_delay_ms)
    postgres = PostgresServer(home / "postgres", free_port())
    kafka.launch()  # the broker's JVM starts while PostgreSQL does
    try:
        postgres.start()
        try:
            kafka.wait_until_ready(timeout=90.0)
            if commit_timestamps:
                _track_commit_timestamps(postgres)
            yield ScratchStack(kafka, postgres, home)
        finally:
            postgres.stop()
    finally:
        kafka.stop()


def _track_commit_timestamps(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    postgres.stop()
    postgres.start()


def faust_command(*args: str, app: str = "restaurant_app") -> list[str]:
    """``faust -A app ...`` with this interpreter."""
    return [sys.executable, "-m", "faust", "-A", app, *args]


@dataclass
class WorkerProcess(ChildProcess):
    """A real ``faust -A restaurant_app worker`` process (or another app's), its output in ``log_file``."""

    env: dict[str, str]
    log_file: Path
    app: str = "restaurant_app"
    log_level: str = "info"
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    started_at: float = 0.0

    def start(self, ready_timeout: float | None = 60.0) -> WorkerProcess:
        """Start the worker; wait until it is ready unless ``ready_timeout`` is None."""
        env = {**os.environ, "WEB_PORT": str(self.web_port), "LOG_LEVEL": self.log_level, **self.env}
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.started_at = time.time()
        self.process = spawn(faust_command("worker", "-l", self.log_level, app=self.app),
                             self.log_file, env=env, cwd=PROJECT_ROOT)
        if ready_timeout is not None:
            self.wait_for_log(READY_LINE, ready_timeout, offset)
        return self

    def wait_for_log(self, text: str, timeout: float, offset: int = 0) -> None:
        """Wait until ``text`` appears in the log after byte ``offset``; fail if the worker exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_file.exists() and text in self.log_file.read_text(errors="replace")[offset:]:
                return
            self.check_alive()
            time.sleep(0.2)
        raise TimeoutError(f"worker never logged {text!r}:\n{tail(self.log_file, 60)}")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{tail(self.log_file, 60)}")

    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker is not running"
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

