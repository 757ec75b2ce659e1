"""Disk use per order: what PostgreSQL (tables, indexes, WAL) and Kafka (log segments) keep.

A real worker stores ``count`` generated orders published at a steady rate into a new database
and topic; the growth of the database, of the WAL written and of the topic's log segments,
divided by the orders, gives bytes per order, and from them the disk a day of traffic takes.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.pipeline import pipeline_env, produce_orders, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess

log = logging.getLogger("bench")

MINUTES_PER_DAY = 24 * 60
DAY_RATES = (10, 100, 1_000)
"""Orders a minute the figures are given for: a small restaurant, a busy one, a chain."""


@dataclass(frozen=True)
class DiskUse:
    """What one database and one topic occupy at a moment, and the WAL written up to it."""

    database_bytes: int
    """``pg_database_size``: tables, indexes and TOAST of the database."""
    wal_lsn: str
    """The server's WAL insert position; the difference of two is the WAL written in between."""
    kafka_log_bytes: int
    """Bytes of the topic's log segments (``*.log``), every partition."""
    kafka_disk_bytes: int
    """Blocks the topic's folders take on disk (segments, indexes, checkpoints)."""


def topic_folders(stack: ScratchStack, topic: str) -> list[Path]:
    """The broker's folder of each partition of ``topic``."""
    return sorted((stack.kafka.home / "data").glob(f"{topic}-[0-9]*"))


def kafka_bytes(folders: list[Path]) -> tuple[int, int]:
    """Bytes of the log segments in ``folders``, and the disk blocks all their files take."""
    files = [f for folder in folders for f in folder.iterdir() if f.is_file()]
    segments = sum(f.stat().st_size for f in files if f.suffix == ".log")
    return segments, sum(f.stat().st_blocks * 512 for f in files)


def disk_use(stack: ScratchStack, database_url: str, topic: str) -> DiskUse:
    """The database's size, the server's WAL position and the topic's bytes, now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the database's files hold what the WAL says, flushed
        size, lsn = conn.execute(
            "SELECT pg_database_size(current_database()), pg_current_wal_insert_lsn()::text").fetchone()
    segments, blocks = kafka_bytes(topic_folders(stack, topic))
    return DiskUse(size, lsn, segments, blocks)


def wal_bytes(database_url: str, start: str, end: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint",
                            (end, start)).fetchone()[0]


def disk_run(stack: ScratchStack, count: int, rate: float, seed: int) -> dict[str, float]:
    """Bytes per order in PostgreSQL and Kafka, after a worker stored ``count`` orders sent at ``rate``/s."""
    database_url = stack.new_database("disk")
    topic = f"bench-disk-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(stack, database_url, topic, "disk")
    worker = WorkerProcess(env, stack.home / "logs" / "disk-worker.log", log_level="warn")
    try:
        worker.start(ready_timeout=None)  # at warn, the worker does not log that it is ready
        produce_orders(env, 1, seed + 1_000_000)  # the topic exists and the tables are made
        wait_for_orders(database_url, 1, worker, timeout=120)
        before = disk_use(stack, database_url, topic)
        log.info("  publishing %d orders at %.0f/s ...", count, rate)
        produce_orders(env, count, seed, rate)
        wait_for_orders(database_url, count + 1, worker, timeout=max(300.0, count / 50))
        after = disk_use(stack, database_url, topic)
    finally:
        worker.stop()
    return per_order(before, after, wal_bytes(database_url, before.wal_lsn, after.wal_lsn), count)


def per_order(before: DiskUse, after: DiskUse, wal: int, count: int) -> dict[str, float]:
    figures = {
        "postgres_bytes_per_order": (after.database_bytes - before.database_bytes) / count,
        "wal_bytes_per_order": wal / count,
        "kafka_log_bytes_per_order": (after.kafka_log_bytes - before.kafka_log_bytes) / count,
        "kafka_disk_bytes_per_order": (after.kafka_disk_bytes - before.kafka_disk_bytes) / count,
    }
    kept = figures["postgres_bytes_per_order"] + figures["kafka_log_bytes_per_order"]
    for rate in DAY_RATES:
        figures[f"mib_per_day_at_{rate}"] = kept * rate * MINUTES_PER_DAY / 2**20
    return figures
