"""``python -m bench.spark_profile``: where a settled Spark Connect server's CPU goes in a report run.

Starts a scratch PostgreSQL under bench/.work/ with ``--history`` bulk-loaded orders and a Spark
Connect server as ``make run`` does (its JVM keeping deep stacks for Java Flight Recorder), then
launches ``--warm-up`` incremental report runs as the worker does (forked from its fork server),
each after a minute of new orders, so that the server's JIT settles; then records ``--runs``
more with JFR's sampling profiler (``jcmd JFR.start``). Prints each measured run's CPU (job and
server) and the share of the server's samples in each phase of Spark's work, a sample counting
for the first phase found from its leaf frame up (``PHASES``). JFR's own sampling adds to the
runs' CPU: the shares are the result, the CPU of the profiled runs only a guide.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.monitor import process_tree_cpu
from bench.pipeline import spark_connect_server
from bench.reports import NewOrders, WorkerLauncher, bulk_load, history_end
from infra.postgres import PostgresServer
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.java_runtime import java_executable
from restaurant_app.traffic import OrderGenerator

WORK_DIR = Path(__file__).resolve().parent / ".work" / "spark-profile"
DEEP_STACKS = "-XX:FlightRecorderOptions=stackdepth=2048"
"""JFR keeps 64 frames by default: too few to reach the Spark Connect operation of a sample."""
PHASES = (
    ("analysis (Analyzer, CheckAnalysis)", ("catalyst.analysis.",)),
    ("optimizer", ("catalyst.optimizer.", "execution.SparkOptimizer")),
    ("physical planning", ("QueryPlanner", "SparkStrategies", "QueryExecution$.prepareForExecution",
                           "exchange.EnsureRequirements")),
    ("Spark Connect plan translation", ("connect.planner.SparkConnectPlanner",)),
    ("closure cleaning (class bytes read per job)", ("ClosureCleaner",)),
    ("task (de)serialization", ("ObjectOutputStream", "ObjectInputStream", "JavaSerializer")),
    ("JDBC (PostgreSQL driver, reads and writes)", ("org.postgresql.", "datasources.jdbc.")),
    ("block manager (checkpointed rows)", ("storage.BlockManager", "storage.memory.")),
    ("task execution (operators)", ("Executor$TaskRunner",)),
    ("scheduler", ("DAGScheduler", "TaskSchedulerImpl", "TaskSetManager")),
)
FRAME = re.compile(r"^\s+([\w$.<>/+]+)\(")

log = logging.getLogger("bench")


def samples(recording: Path) -> Iterator[list[str]]:
    """Each execution sample of a JFR ``recording``, as ``stacks`` reads ``jfr print``'s text."""
    jfr = Path(java_executable()).resolve().with_name("jfr")
    printed = subprocess.run([str(jfr), "print", "--events", "jdk.ExecutionSample", "--stack-depth", "2048",
                              str(recording)], capture_output=True, text=True, check=True).stdout
    return stacks(printed)


def stacks(printed: str) -> Iterator[list[str]]:
    """Each event's frames in ``jfr print``'s text, leaf first, as ``class.method``."""
    frames: list[str] = []
    for line in printed.splitlines():
        match = FRAME.match(line)
        if match:
            frames.append(match.group(1))
        elif line.startswith("}") and frames:
            yield frames
            frames = []


def phase(frames: list[str]) -> str:
    """The first of ``PHASES`` found from the leaf frame up; ``other`` if none."""
    for frame in frames:
        for name, marks in PHASES:
            if any(mark in frame for mark in marks):
                return name
    return "other"


@contextmanager
def deep_stacks() -> Iterator[None]:
    """JVMs started meanwhile keep ``DEEP_STACKS`` (``JAVA_TOOL_OPTIONS``, restored after)."""
    before = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = DEEP_STACKS
    try:
        yield
    finally:
        if before is None:
            del os.environ["JAVA_TOOL_OPTIONS"]
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = before


def profile(history: int, warm_up: int, runs: int) -> None:
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    postgres = PostgresServer(WORK_DIR / "postgres", free_port())
    postgres.start()
    try:
        postgres.create_database("reports")
        url = postgres.url("reports")
        asyncio.run(Database(url).migrate())
        bulk_load(url, 0, history - 1, history_end())
        new_orders = NewOrders(url, OrderGenerator(42), datetime.now(UTC).replace(second=0, microsecond=0))
        with deep_stacks(), spark_connect_server(WORK_DIR / "spark-connect") as server:
            measure(server, url, new_orders, warm_up, runs)
    finally:
        postgres.stop()


def measure(server: SparkConnectServer, url: str, new_orders: NewOrders, warm_up: int, runs: int) -> None:
    server_process = psutil.Process(server.process.pid)
    jvm = next(p for p in (server_process, *server_process.children(recursive=True)) if p.name() == "java")
    recording = WORK_DIR / "runs.jfr"
    env = {**os.environ, "DATABASE_URL": url, "SPARK_LOCAL_DIRS": str(WORK_DIR / "spark"),
           "SPARK_REMOTE": server.remote}
    jcmd = Path(java_executable()).resolve().with_name("jcmd")
    with closing(WorkerLauncher(env)) as launch:
        log.info("%d unmeasured runs to settle the server ...", warm_up)
        for _ in range(warm_up):
            new_orders.add()
            launch()
        subprocess.run([str(jcmd), str(jvm.pid), "JFR.start", "name=runs"], check=True, capture_output=True)
        for number in range(1, runs + 1):
            new_orders.add()
            job, spark = launch.cpu(), process_tree_cpu(server_process)
            launch()
            log.info("run %d: CPU s, job %.2f, server %.2f (JFR sampling)", number, launch.cpu() - job,
                     process_tree_cpu(server_process) - spark)
        subprocess.run([str(jcmd), str(jvm.pid), "JFR.dump", "name=runs", f"filename={recording}"],
                       check=True, capture_output=True)
    phases = Counter(phase(frames) for frames in samples(recording))
    total = sum(phases.values())
    print(f"Spark Connect server, {runs} settled runs: {total} samples")
    for name, count in phases.most_common():
        print(f"{count / total:6.1%}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_profile", description=__doc__)
    parser.add_argument("--history", type=int, default=20_000, help="bulk-loaded older orders")
    parser.add_argument("--warm-up", type=int, default=30, help="unmeasured runs first")
    parser.add_argument("--runs", type=int, default=10, help="runs recorded")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("restaurant_app").setLevel(logging.WARNING)
    profile(args.history, args.warm_up, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
