"""make run's supervision on the real processes: each one killed with SIGKILL comes back by itself."""

import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port, local_stack
from infra.supervisor import Part, RestartPolicy, Supervisor
from restaurant_app.settings import Settings
from tests.services import (
    create_topic,
    produce,
    query,
    run_report_job,
    unique_names,
    wait_until,
)
from tests.test_scale_out import topic_layout, topic_order_ids

BACK = re.compile(r"(.+) is back, ([\d.]+) s after it went down\.")


def listener(port: int) -> psutil.Process:
    """The process listening on 127.0.0.1:``port``."""
    pids = {conn.pid for conn in psutil.net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN}
    assert len(pids) == 1, f"port {port}: {pids}"
    return psutil.Process(pids.pop())


def comebacks(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    """Each part the supervisor brought back, with the seconds it was down, as it logged them."""
    return [(match[1], float(match[2])) for match in map(BACK.fullmatch, caplog.messages) if match]


def stored_ids(database_url: str) -> set[str]:
    return {row[0] for row in query(database_url, "SELECT order_id::text FROM orders")}


@contextmanager
def watching(supervisor: Supervisor) -> Iterator[None]:
    """The supervisor's watch in a thread, as make run's main loop, until the block ends."""
    stop, failures = threading.Event(), []

    def watch() -> None:
        try:
            supervisor.watch(stop, interval=0.5)
        except Exception as exc:  # noqa: BLE001 - handed to the test below
            failures.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=300)
    assert failures == []


@pytest.fixture
def services_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """make run's defaults: it starts Kafka, PostgreSQL and Spark Connect itself."""
    for name in ("KAFKA_BROKER", "DATABASE_URL", "SPARK_REMOTE", "SPARK_CLUSTER", "KAFKA_NODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "512m")
    monkeypatch.setenv("POSTGRES_REPLICA", "1")


def postmaster(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


@pytest.mark.integration
def test_kafka_postgres_its_replica_spark_connect_and_a_worker_killed_come_back_and_the_pipeline_goes_on(
    services_env: None, own_service_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
):
    ports = {"kafka_port": free_port(), "postgres_port": free_port(), "spark_port": free_port(),
             "replica_port": free_port()}
    supervisor = Supervisor(RestartPolicy(first_delay=1.0))
    with caplog.at_level(logging.INFO, logger="infra"), \
            local_stack(own_service_home, Settings.from_env(), supervisor=supervisor, **ports) as env:
        assert [part.name for part in supervisor.parts] == [
            "Kafka", "PostgreSQL", "The PostgreSQL replica", "The Spark Connect server"]
        names = unique_names()
        worker = WorkerProcess({**names, **env, "ORDER_INTERVAL_SECONDS": "1",
                                "REPORT_INTERVAL_SECONDS": "3600"}, tmp_path / "worker.log")
        worker.start(ready_timeout=180)
        supervisor.add(Part("Worker 1", worker.exited, lambda: worker.start(ready_timeout=None)))
        database_url = env["DATABASE_URL"]
        try:
            with watching(supervisor):
                victims = {
                    "The Spark Connect server": lambda: listener(ports["spark_port"]).pid,
                    "Kafka": lambda: listener(ports["kafka_port"]).pid,
                    "PostgreSQL": lambda: postmaster(own_service_home / "postgres/data"),
                    "The PostgreSQL replica": lambda: postmaster(own_service_home / "postgres-replica/data"),
                    "Worker 1": lambda: worker.pid,
                }
                for number, (name, pid) in enumerate(victims.items(), 1):
                    before = len(stored_ids(database_url))
                    os.kill(pid(), signal.SIGKILL)
                    wait_until(lambda n=number: len(comebacks(caplog)) >= n, timeout=240,
                               message=f"{name} did not come back:\n{caplog.text[-3000:]}")
                    assert comebacks(caplog)[-1][0] == name
                    wait_until(lambda b=before: len(stored_ids(database_url)) > b + 3, timeout=180,
                               message=f"no order was stored after {name} came back")
                # Orders are keyed by their store now: their ids are in the messages.
                published = set(topic_order_ids(env["KAFKA_BROKER"], names["ORDERS_TOPIC"]))
                wait_until(lambda: stored_ids(database_url) >= published, timeout=120,
                           message="orders published were not stored")
                # The job reads the orders from the replica, which streams from the primary again.
                report = run_report_job(database_url, env={
                    "SPARK_REMOTE": env["SPARK_REMOTE"], "REPORTS_DATABASE_URL": env["REPORTS_DATABASE_URL"]})
            assert report["status"] == "succeeded" and report["windows"] > 0, report
            assert report["orders_read"] >= len(published) > 0, report
        finally:
            worker.stop()
    assert "Kafka was killed by SIGKILL; starting it again in 1 s" in caplog.text
    assert "PostgreSQL is not running (its postmaster is gone)" in caplog.text
    print("Seconds each part was down:", dict(comebacks(caplog)))


@pytest.mark.integration
def test_one_of_three_kafka_nodes_killed_comes_back_and_rejoins_every_partition(
    stack: ScratchStack, own_service_home: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.delenv("KAFKA_BROKER", raising=False)
    monkeypatch.setenv("KAFKA_NODES", "3")
    monkeypatch.setenv("DATABASE_URL", stack.new_database())  # Kafka alone is started
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:1")
    supervisor = Supervisor(RestartPolicy(first_delay=1.0))
    port = free_port()
    with caplog.at_level(logging.INFO, logger="infra"), \
            local_stack(own_service_home, Settings.from_env(), kafka_port=port, supervisor=supervisor) as env:
        assert [part.name for part in supervisor.parts] == [f"Kafka node {i}" for i in (1, 2, 3)]
        topic = unique_names()["ORDERS_TOPIC"]
        create_topic(env["KAFKA_BROKER"], topic, replicas=3)
        with watching(supervisor):
            os.kill(listener(port + 2).pid, signal.SIGKILL)  # node 2
            wait_until(lambda: comebacks(caplog), timeout=240, message=caplog.text[-3000:])
            produce(env["KAFKA_BROKER"], topic, [(None, b"after the restart")])
            in_sync = wait_until(lambda: topic_layout(env["KAFKA_BROKER"], topic)[2] == {3}, timeout=120)
    assert in_sync and [name for name, _ in comebacks(caplog)] == ["Kafka node 2"]
    assert "Kafka node 2 was killed by SIGKILL" in caplog.text
    print("Seconds node 2 was down:", comebacks(caplog)[0][1])
