"""Soak: the pipeline at a steady rate for ``SOAK_MINUTES`` (60), through a PostgreSQL restart and
a worker restart, sampled every minute; what grows, and how fast.

A real worker (reports every minute on a Spark Connect server, as ``make run`` has them) stores
orders that ``produce-orders --rate`` publishes for the whole run. A third of the way in,
PostgreSQL is stopped and started again; two thirds in, the worker is (SIGTERM, then a new
process). Each minute the bench samples the memory of every process, the disk the data takes
and the worker's consumer lag; at the end it fits a straight line to each series (least
squares) and reports its slope per hour, over the whole run and over its second half, and
checks that every published order was stored exactly once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bench.disk import disk_use
from bench.pipeline import count_orders, pipeline_env, spark_connect_server, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess, faust_command
from infra.spark_connect import SparkConnectServer
from restaurant_app.settings import PROJECT_ROOT

log = logging.getLogger("bench")

SAMPLE_SECONDS = 60.0
POSTGRES_DOWN_SECONDS = 10.0
MIB = 2**20


@dataclass
class Soak:
    """The samples of a soak: one row a minute, each series by name (None: could not be read)."""

    minutes: list[float] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    published: int = 0
    stored: int = 0
    rejected: int = 0

    def add(self, minute: float, values: dict[str, float | None]) -> None:
        for name, value in values.items():
            self.series.setdefault(name, [None] * len(self.minutes)).append(value)
        self.minutes.append(minute)
        for column in self.series.values():
            if len(column) < len(self.minutes):
                column.append(None)

    def series_at(self, index: int) -> dict[str, float | None]:
        return {name: column[index] for name, column in self.series.items()}


def tree_memory(root: psutil.Process, kind: str = "rss", itself: bool = True, children: bool = True
                ) -> float | None:
    """MiB of resident memory of ``root`` and of its children (each unless told not to): ``rss``,
    or ``pss`` (shared pages split among the processes sharing them, for PostgreSQL's shared
    buffers); None once it is gone."""
    try:
        processes = [root] * itself + (root.children(recursive=True) if children else [])
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            memory = process.memory_full_info() if kind == "pss" else process.memory_info()
            total += getattr(memory, kind)
        except psutil.Error:
            continue
    return total / MIB


def consumer_lag(url: str) -> float | None:
    """The worker's ``restaurant_consumer_lag_messages``, summed; None if it did not answer."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "restaurant_consumer_lag_messages" for sample in family.samples)


def slope_per_hour(minutes: list[float], values: list[float | None]) -> float | None:
    """Least-squares slope of ``values`` against time, per hour; None with fewer than two values."""
    points = [(m / 60, v) for m, v in zip(minutes, values, strict=True) if v is not None]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else None


def second_half(soak: Soak, values: list[float | None]) -> tuple[list[float], list[float | None]]:
    half = len(soak.minutes) // 2
    return soak.minutes[half:], values[half:]


class Sampler:
    """Reads every series once: memory per process, disk, WAL, lag and orders stored."""

    def __init__(self, stack: ScratchStack, database_url: str, topic: str,
                 processes: dict[str, Callable[[], int | None]]) -> None:
        self.stack, self.database_url, self.topic, self.processes = stack, database_url, topic, processes
        self.first_wal: str | None = None

    def sample(self, worker: WorkerProcess) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for name, pid in self.processes.items():
            kind = "pss" if name == "postgres" else "rss"
            values[f"{name}_{kind}_mib"] = self.memory(pid(), kind, children=name != "worker")
        # the worker alone above; here its fork server and the report jobs running at the moment
        values["worker_children_rss_mib"] = self.memory(self.processes["worker"](), "rss", itself=False)
        values.update(self.disk())
        values["consumer_lag_messages"] = consumer_lag(worker.url)
        return values

    @staticmethod
    def memory(pid: int | None, kind: str, itself: bool = True, children: bool = True) -> float | None:
        try:
            return tree_memory(psutil.Process(pid), kind, itself, children) if pid else None
        except psutil.NoSuchProcess:
            return None

    def disk(self) -> dict[str, float | None]:
        try:
            use = disk_use(self.stack, self.database_url, self.topic)
            with psycopg.connect(self.database_url) as conn:
                self.first_wal = self.first_wal or use.wal_lsn
                wal = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint",
                                   (use.wal_lsn, self.first_wal)).fetchone()[0]
                stored = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        except psycopg.OperationalError:
            return {"database_mib": None, "wal_written_mib": None, "pg_wal_dir_mib": None,
                    "kafka_topic_mib": None, "orders_stored": None}
        wal_dir = self.stack.postgres.data_dir / "pg_wal"
        return {"database_mib": use.database_bytes / MIB, "wal_written_mib": wal / MIB,
                "pg_wal_dir_mib": sum(f.stat().st_size for f in wal_dir.iterdir() if f.is_file()) / MIB,
                "kafka_topic_mib": use.kafka_disk_bytes / MIB, "orders_stored": float(stored)}


def restart_postgres(stack: ScratchStack, soak: Soak, minute: float) -> None:
    started = time.monotonic()
    stack.postgres.stop()
    time.sleep(POSTGRES_DOWN_SECONDS)
    stack.postgres.start()
    soak.events.append(f"minute {minute:.0f}: PostgreSQL stopped for {POSTGRES_DOWN_SECONDS:.0f} s and"
                       f" started again ({time.monotonic() - started:.0f} s in all)")
    log.info("  %s", soak.events[-1])


def restart_worker(worker: WorkerProcess, soak: Soak, minute: float) -> None:
    started = time.monotonic()
    worker.stop()
    worker.start(ready_timeout=180)
    soak.events.append(f"minute {minute:.0f}: the worker stopped (SIGTERM) and a new one ready"
                       f" {time.monotonic() - started:.0f} s later")
    log.info("  %s", soak.events[-1])


def soak_run(stack: ScratchStack, minutes: int, rate: float, seed: int) -> Soak:
    """Run the soak for ``minutes`` at ``rate`` orders/s; return its samples and what happened."""
    database_url = stack.new_database("soak")
    topic = f"bench-soak-{uuid.uuid4().hex[:8]}"
    logs = stack.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with spark_connect_server(stack.home / "spark-connect") as server:
        env = {**pipeline_env(stack, database_url, topic, "soak"), "SPARK_REMOTE": server.remote,
               "REPORT_INTERVAL_SECONDS": "60", "ORDER_SIMULATOR": "off"}
        worker = WorkerProcess(env, logs / "soak-worker.log", log_level="info", web_port=int(env["WEB_PORT"]))
        worker.start(ready_timeout=180)
        count = round(rate * 60 * minutes)
        with (logs / "soak-producer.log").open("w") as output:
            producer = subprocess.Popen(
                faust_command("produce-orders", "--count", str(count), "--seed", str(seed),
                              "--rate", str(rate)),
                env={**os.environ, **env}, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            soak = sample_for(stack, database_url, topic, minutes, worker, server, producer)
            if producer.wait(timeout=600) != 0:
                raise RuntimeError(f"produce-orders failed; its output is in {logs / 'soak-producer.log'}")
            wait_for_orders(database_url, count, worker, timeout=600)
        finally:
            producer.kill()
            worker.stop()
    soak.published = count
    soak.stored = count_orders(database_url)
    with psycopg.connect(database_url) as conn:
        soak.rejected = conn.execute("SELECT count(*) FROM rejected_orders").fetchone()[0]
    return soak


def sample_for(stack: ScratchStack, database_url: str, topic: str, minutes: int, worker: WorkerProcess,
               server: SparkConnectServer, producer: subprocess.Popen) -> Soak:
    """Sample every minute for ``minutes``, restarting PostgreSQL and then the worker on the way."""
    server_process = server.process
    sampler = Sampler(stack, database_url, topic, {
        "worker": lambda: worker.process.pid if worker.process else None,
        "kafka": lambda: stack.kafka_process().pid,
        "postgres": stack.postgres.postmaster_pid,
        "spark_connect": lambda: server_process.pid if server_process else None,
        "producer": lambda: producer.pid if producer.poll() is None else None,
    })
    soak = Soak()
    restarts = {max(minutes // 3, 1): lambda m: restart_postgres(stack, soak, m),
                max(2 * minutes // 3, 2): lambda m: restart_worker(worker, soak, m)}
    started = time.monotonic()
    for minute in range(minutes + 1):
        time.sleep(max(started + minute * SAMPLE_SECONDS - time.monotonic(), 0))
        soak.add(minute, sampler.sample(worker))
        log.info("  minute %d of %d: %s", minute, minutes, ", ".join(
            f"{name} {value:,.1f}" for name, value in soak.series_at(-1).items() if value is not None))
        if minute in restarts and minute < minutes:
            restarts[minute](minute)
    return soak


def slopes(soak: Soak) -> list[list[str]]:
    """A row per series: first and last value, and its slope per hour over the run and its second half."""
    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.1f}"

    rows = []
    for name, values in soak.series.items():
        known = [v for v in values if v is not None]
        rows.append([f"`{name}`", cell(known[0] if known else None), cell(known[-1] if known else None),
                     cell(slope_per_hour(soak.minutes, values)),
                     cell(slope_per_hour(*second_half(soak, values)))])
    return rows


def samples(soak: Soak) -> tuple[list[str], list[list[str]]]:
    """Every sample: a header of series names and a row a minute."""
    header = ["minute", *soak.series]
    return header, [[f"{minute:.0f}", *("" if v is None else f"{v:,.1f}" for v in soak.series_at(i).values())]
                    for i, minute in enumerate(soak.minutes)]
