"""Ingest throughput: the real worker drains a preloaded topic into PostgreSQL, against the baseline."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import psutil

from bench.baseline import run_baseline
from bench.commits import commit_timeline
from bench.latency import batch_totals
from bench.monitor import CpuMonitor, peak_rss_bytes
from bench.pipeline import pipeline_env, produce_orders, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.progress import Progress

log = logging.getLogger("bench")

MIB = 1024 * 1024
FLOOR_SHARE = 4
"""Faust alone reads the first quarter of the preloaded topic."""
PRELOAD_STORES = 50
"""Stores the preloaded orders come from. Kafka keys an order by its store: one store would put
every order in one partition, and a second worker (or Quix process) would have nothing to do."""


def preload(stack: ScratchStack, orders: int, seed: int) -> str:
    """Publish ``orders`` generated orders to a new topic with the load mode; return its name."""
    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    env = {**pipeline_env(stack, stack.postgres.url(), topic, "preload"),
           "SIMULATED_STORES": str(PRELOAD_STORES)}
    log.info("Preloading %s orders of %d stores (seed %d) into topic %s ...", f"{orders:,}",
             PRELOAD_STORES, seed, topic)
    log.info("  %s", produce_orders(env, orders, seed))
    return topic


def group_of_workers(stack: ScratchStack, env: dict[str, str], workers: int, name: str
                     ) -> list[WorkerProcess]:
    """``workers`` worker processes of one consumer group, each with a free web port and a folder."""
    env = {key: value for key, value in env.items() if key != "WEB_PORT"}  # each takes a free port
    return [WorkerProcess({**env, "DATA_DIR": f"{env['DATA_DIR']}-{n}"},
                          stack.home / "logs" / f"{name}-{n}.log", log_level="warn")
            for n in range(1, workers + 1)]


def drain_with_worker(stack: ScratchStack, topic: str, orders: int, run: int, workers: int = 1
                      ) -> dict[str, float]:
    """Start ``workers`` workers in a new consumer group, with a new database; measure them
    storing every order. CPU and memory figures are the workers' sums."""
    database_url = stack.new_database("ingest")
    env = pipeline_env(stack, database_url, topic, f"ingest{run}")
    processes = group_of_workers(stack, env, workers, f"ingest-worker-{run}-of-{workers}")
    groups = {"postgres": stack.postgres_process(), "kafka": stack.kafka_process()}
    try:
        for n, worker in enumerate(processes, start=1):
            groups[f"worker{n}"] = psutil.Process(worker.start(ready_timeout=None).pid)
        with CpuMonitor(groups) as monitor, Progress("Worker storing orders", orders) as progress:
            wait_for_orders(database_url, orders, processes[0], timeout=max(600.0, orders / 100),
                            progress=progress)
            peak_rss = sum(peak_rss_bytes(worker.pid) for worker in processes)
            batches = [batch_totals(worker.url) for worker in processes]
    finally:
        for worker in processes:
            worker.stop()
    timeline = commit_timeline(database_url)
    orders_per_s, rows_per_s = timeline.rates()
    cpu = monitor.cpu_between(timeline.first, timeline.last)
    worker_cpu = sum(cpu[f"worker{n}"] for n in range(1, workers + 1))
    stored = orders_per_s * timeline.window
    return {
        "orders_per_s": orders_per_s,
        "rows_per_s": rows_per_s,
        "worker_cpu_s": worker_cpu,
        "worker_us_per_order": worker_cpu / stored * 1e6,
        "postgres_us_per_order": cpu["postgres"] / stored * 1e6,
        "kafka_us_per_order": cpu["kafka"] / stored * 1e6,
        "total_us_per_order": (worker_cpu + cpu["postgres"] + cpu["kafka"]) / stored * 1e6,
        "worker_cores": worker_cpu / timeline.window,
        "postgres_cores": cpu["postgres"] / timeline.window,
        "kafka_cores": cpu["kafka"] / timeline.window,
        "peak_rss_mib": peak_rss / MIB,
        "orders_per_batch": sum(b["messages"] for b in batches) / sum(b["batches"] for b in batches),
        "wall_s": timeline.last - processes[0].started_at,
    }


def floor_rate(progress: Path, messages: int) -> float | None:
    """Messages/s acknowledged after the first batch, once ``messages`` are done; else None."""
    if not progress.exists():
        return None
    batches = [json.loads(line) for line in progress.read_text().splitlines()]
    if sum(count for _, count in batches) < messages or len(batches) < 2:
        return None
    first, last = batches[0][0], batches[-1][0]
    return sum(count for _, count in batches[1:]) / (last - first)


def drain_with_floor(stack: ScratchStack, topic: str, messages: int, run: int) -> float:
    """Messages/s of Faust alone (bench/floor.py) over the first ``messages`` of the topic."""
    env = pipeline_env(stack, stack.postgres.url(), topic, f"floor{run}")
    worker = WorkerProcess(env, stack.home / "logs" / f"floor-worker-{run}.log", app="bench.floor",
                           log_level="warn")
    progress = Path(env["DATA_DIR"]) / "floor.jsonl"
    deadline = time.monotonic() + max(300.0, messages / 100)
    try:
        worker.start(ready_timeout=None)
        while (rate := floor_rate(progress, messages)) is None:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Faust alone did not read {messages} messages in time")
            time.sleep(0.5)
    finally:
        worker.stop()
    return rate


def drain_with_baseline(stack: ScratchStack, topic: str, orders: int, run: int) -> float:
    """Run the naive consumer over the first ``orders`` messages; return its orders/s."""
    database_url = stack.new_database("baseline")
    run_baseline(stack.bootstrap_servers, topic, database_url, orders,
                 group_id=f"bench-baseline-{run}-{uuid.uuid4().hex[:8]}", security=stack.kafka.security)
    return commit_timeline(database_url).rates()[0]


def ingest_run(stack: ScratchStack, topic: str, orders: int, baseline_orders: int,
               run: int) -> dict[str, float]:
    """One run: one worker, then two, over all orders; then Faust alone and the baseline over subsets."""
    figures = drain_with_worker(stack, topic, orders, run)
    log.info("  worker: %s orders/s, %.2f cores of CPU", f"{figures['orders_per_s']:,.0f}",
             figures["worker_cores"])
    pair = drain_with_worker(stack, topic, orders, run, workers=2)
    figures["two_workers_cores"] = pair["worker_cores"]
    figures.update({f"two_workers_{key}": pair[key] for key in (
        "orders_per_s", "worker_us_per_order", "postgres_us_per_order", "kafka_us_per_order",
        "total_us_per_order")})
    log.info("  two workers: %s orders/s, %.2f cores of CPU", f"{pair['orders_per_s']:,.0f}",
             pair["worker_cores"])
    figures["floor_messages_per_s"] = drain_with_floor(stack, topic, orders // FLOOR_SHARE, run)
    log.info("  Faust alone: %s messages/s", f"{figures['floor_messages_per_s']:,.0f}")
    figures["baseline_orders_per_s"] = drain_with_baseline(stack, topic, baseline_orders, run)
    figures["speedup"] = figures["orders_per_s"] / figures["baseline_orders_per_s"]
    log.info("  baseline: %s orders/s; the worker is %.0fx faster",
             f"{figures['baseline_orders_per_s']:,.0f}", figures["speedup"])
    return figures
