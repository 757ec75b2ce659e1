"""The report job on a Spark standalone cluster (a master and a worker of our own) equals local mode."""

import asyncio
import json
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from infra.java import StackError
from infra.scratch import ScratchStack
from infra.spark_cluster import SparkCluster
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.models import Order
from tests.services import command_lines, run_report_job
from tests.test_reports_job import dish_rows, history, sales_rows, save, snapshot, without_computed_at

pytestmark = pytest.mark.integration

APP_NAME = "restaurant-sales-reports"
CONNECT_APP_NAME = "restaurant-sales-spark-connect"


@pytest.fixture(scope="module")
def cluster(stack: ScratchStack) -> Iterator[SparkCluster]:
    spark = SparkCluster(stack.home / "spark-cluster", free_port(), free_port())
    spark.start()
    try:
        yield spark
    finally:
        spark.stop()


@dataclass
class Runs:
    local: dict
    on_cluster: dict
    via_connect: dict
    local_tables: dict
    cluster_tables: dict
    connect_tables: dict


def filled_database(stack: ScratchStack, orders: list[Order]) -> str:
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    save(url, orders)
    return url


@pytest.fixture(scope="module")
def runs(stack: ScratchStack, cluster: SparkCluster) -> Runs:
    """The same history reported three times: by local Spark in one statement, by the cluster
    in three, and by a Spark Connect server whose executors run on the cluster (as in
    ``SPARK_CLUSTER=1 make run``)."""
    orders = history()  # once: the generator's first-time customers are new on every call
    local_url, cluster_url, connect_url = (filled_database(stack, orders) for _ in range(3))
    local = run_report_job(local_url, env={"SPARK_REMOTE": "", "SPARK_JDBC_PARTITIONS": "1"})
    on_cluster = run_report_job(cluster_url, env={
        "SPARK_REMOTE": "", "SPARK_MASTER": cluster.url, "SPARK_EXECUTOR_MEMORY": "512m",
        "SPARK_JDBC_PARTITIONS": "3", "SPARK_AUTH_PROPERTIES": str(cluster.auth_file),
    })
    # Started only now: a standalone application holds the worker's cores while it runs.
    server = SparkConnectServer(stack.home / "spark-connect-on-cluster", free_port(),
                                timezone="UTC", master=cluster.url,
                                driver_memory="512m", auth_file=cluster.auth_file)
    server.start()
    try:
        via_connect = run_report_job(connect_url, env={"SPARK_REMOTE": server.remote,
                                                       "SPARK_JDBC_PARTITIONS": "3"})
    finally:
        server.stop()
    return Runs(local, on_cluster, via_connect,
                *(without_computed_at(snapshot(url), url) for url in (local_url, cluster_url, connect_url)))


def master_state(cluster: SparkCluster) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.webui_port}/json/", timeout=5) as answer:
        return json.load(answer)


def test_the_worker_registered_on_loopback(cluster: SparkCluster):
    workers = master_state(cluster)["workers"]
    assert [worker["host"] for worker in workers] == ["127.0.0.1"]


def test_the_master_listens_only_on_its_two_ports(cluster: SparkCluster):
    assert cluster.master is not None
    master = psutil.Process(cluster.master.pid)
    listening = {conn.laddr.port for process in [master, *master.children(recursive=True)]
                 for conn in process.net_connections(kind="tcp") if conn.status == psutil.CONN_LISTEN}
    assert listening == {cluster.port, cluster.webui_port}


def test_every_run_succeeds_and_reads_the_same_orders(runs: Runs):
    statuses = {runs.local["status"], runs.on_cluster["status"], runs.via_connect["status"]}
    assert statuses == {"succeeded"}, runs
    assert runs.on_cluster["orders_read"] == runs.via_connect["orders_read"] == runs.local["orders_read"] > 0
    assert runs.on_cluster["rows_read"] == runs.via_connect["rows_read"] == runs.local["rows_read"]


def test_the_job_and_the_spark_connect_server_ran_on_the_cluster(runs: Runs, cluster: SparkCluster):
    apps = [app["name"] for app in master_state(cluster)["completedapps"]]
    assert APP_NAME in apps
    assert CONNECT_APP_NAME in apps


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
def test_the_cluster_reports_equal_local_mode(runs: Runs, unit: str):
    assert sales_rows(runs.cluster_tables, unit) == sales_rows(runs.local_tables, unit)
    assert dish_rows(runs.cluster_tables, unit) == dish_rows(runs.local_tables, unit)


def test_every_report_table_is_equal(runs: Runs):
    assert runs.cluster_tables == runs.local_tables
    assert runs.connect_tables == runs.local_tables


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"127.0.0.1:{port}.*SPARK_MASTER"):
            SparkCluster(tmp_path, port, free_port()).start()


def test_the_cluster_secret_is_in_a_private_file_and_on_no_command_line(runs: Runs, cluster: SparkCluster):
    assert stat.S_IMODE(cluster.auth_file.stat().st_mode) == 0o600
    secret = dict(line.split("=", 1) for line in cluster.auth_file.read_text().splitlines())
    assert secret["spark.authenticate"] == "true" and len(secret["spark.authenticate.secret"]) >= 32
    assert secret["spark.ui.killEnabled"] == "false"
    daemons = [daemon for daemon in (cluster.master, cluster.worker) if daemon]
    lines = [line for daemon in daemons for line in command_lines(daemon.pid)]
    assert lines and all(secret["spark.authenticate.secret"] not in line for line in lines)
    assert all(secret["spark.authenticate.secret"] not in path.read_text(errors="replace")
               for path in (cluster.master_log, cluster.worker_log))


INTRUDER = """
import sys
from pyspark.sql import SparkSession
builder = SparkSession.builder.master(sys.argv[1]).appName(sys.argv[2])
for pair in sys.argv[3:]:
    builder = builder.config(*pair.split("=", 1))
builder.getOrCreate().range(1).count()
print("RAN ON THE CLUSTER", flush=True)
"""


WRONG_SECRET = ["spark.authenticate=true", "spark.authenticate.secret=" + "x" * 64]


@pytest.mark.parametrize(("settings", "reason"), [
    ([], "Expected SaslMessage, received something else"),
    (WRONG_SECRET, "DIGEST-MD5: digest response format violation. Mismatched response."),
], ids=["no secret", "a wrong secret"])
def test_an_application_without_the_clusters_secret_is_refused(cluster: SparkCluster, tmp_path, settings,
                                                                 reason):
    name = f"intruder-{len(settings)}"
    marks = cluster.master_log.stat().st_size
    command = [sys.executable, "-c", INTRUDER, cluster.url, name, *settings]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=tmp_path) as driver:
        try:
            refused = wait_for_refusal(cluster, marks, reason)
            apps = master_state(cluster)
        finally:
            driver.kill()
        output = driver.communicate()[0]
    assert "RAN ON THE CLUSTER" not in output
    assert name not in {app["name"] for app in apps["activeapps"] + apps["completedapps"]}
    assert refused, f"the master logged no {reason!r}; the driver said:\n{output[-2000:]}"


def wait_for_refusal(cluster: SparkCluster, offset: int, reason: str, timeout: float = 90.0) -> str:
    """The master's first log line after ``offset`` that gives ``reason``, or ``""`` if none in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with cluster.master_log.open(errors="replace") as log:
            log.seek(offset)
            for line in log:
                if reason in line:
                    return line
        time.sleep(0.5)
    return ""
