"""Session-wide real services, and the two tiers.

A test marked ``integration`` runs against the real Kafka, PostgreSQL and Spark: one broker
and one PostgreSQL server serve the whole run. Every other test is in the fast tier
(``make check``), which starts no service: asking for a service's fixture fails at collection,
and starting a service's process fails at once (``refuse_services``).
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
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


SERVICE_FIXTURES = frozenset({"stack", "own_service_home"})
"""Fixtures that start services or give them a home."""

SERVICE_PROGRAMS = frozenset({
    "java", "postgres", "pg_ctl", "initdb", "pg_basebackup", "faust", "chromium", "docker", "kcat",
})
SERVICE_MODULES = frozenset({"infra", "spark_reports", "bench", "faust"})


LONGEST_FIRST = (
    "test_spark_cluster.py", "test_multi_machine.py", "test_spark_connect.py", "test_replica.py",
    "test_scale_out.py",
    "test_resilience.py", "test_reports_job.py", "test_faults.py", "test_supervised_stack.py",
    "test_report_outage.py", "test_dashboard_browser.py", "test_reports_web.py", "test_kafka_secure.py",
    "test_infra.py", "test_spark_security.py", "test_stores.py", "test_business_day.py",
    "test_report_figures.py", "test_database_tls.py", "test_web_login.py",
)
"""The test files that take longest (``pytest --durations``), started first, so that the two
processes of ``make test`` (``-n 2 --dist loadfile``) end at about the same time."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first; a fast-tier test may not ask for a fixture that starts a service."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    misplaced = [
        f"{item.nodeid} uses {sorted(SERVICE_FIXTURES & set(item.fixturenames))}"
        for item in items
        if not item.get_closest_marker("integration") and SERVICE_FIXTURES & set(item.fixturenames)
    ]
    if misplaced:
        raise pytest.UsageError(
            "These tests start services but are not marked integration:\n  " + "\n  ".join(misplaced)
        )


def starts_a_service(command: Sequence[str] | str) -> bool:
    """Whether ``command`` runs one of the product's services (Kafka, PostgreSQL, Spark, a worker...)."""
    argv = [command] if isinstance(command, str | os.PathLike) else [str(arg) for arg in command]
    program = os.path.basename(str(argv[0])) if argv else ""
    module = argv[argv.index("-m") + 1].split(".")[0] if "-m" in argv[:-1] else ""
    asks_version = argv[1:] == ["-version"]
    return (program in SERVICE_PROGRAMS and not asks_version) or module in SERVICE_MODULES


@pytest.fixture(autouse=True)
def refuse_services(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the fast tier, starting a service's process raises instead."""
    if request.node.get_closest_marker("integration"):
        return
    popen_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Sequence[str] | str, *rest: object, **kwargs: object) -> None:
        if starts_a_service(args):
            raise RuntimeError(
                f"{request.node.nodeid} starts a service ({args!r:.120}) but is not marked"
                " integration: mark it, or keep it in the fast tier without the service"
            )
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


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
        with scratch_stack(home, kafka_heap="384m", rebalance_delay_ms=0) as services:
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
