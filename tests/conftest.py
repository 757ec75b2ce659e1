"""Session-wide real services: one Kafka broker and one PostgreSQL server for the whole run."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.scratch import ScratchStack, WorkerProcess, scratch_stack
from tests.services import unique_names


def service_home() -> Path:
    """A folder for a service's data outside pytest's own temporary tree.

    PostgreSQL runs as an unprivileged user that must reach its data directory, and
    pytest makes its tree private again each time a pytest session starts.
    """
    return Path(tempfile.mkdtemp(prefix="restaurant-tests-"))


@pytest.fixture
def own_service_home() -> Iterator[Path]:
    """A service home for one test, removed afterwards."""
    home = service_home()
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[ScratchStack]:
    """One Kafka broker and one PostgreSQL server for the whole run."""
    home = service_home()
    try:
        with scratch_stack(home, kafka_heap="384m") as services:
            yield services
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def database_url(stack: ScratchStack) -> str:
    """A fresh, empty database for one test."""
    return stack.new_database()


@pytest.fixture
def worker_env(stack: ScratchStack, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker isolated to this test; the order generator stays quiet."""
    return {
        **unique_names(),
        "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": database_url,
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600",
        "TOPIC_PARTITIONS": "2",
        "DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process (not started: call ``.start()``), stopped after the test."""
    process = WorkerProcess(worker_env, tmp_path / "worker.log")
    yield process
    process.stop()
