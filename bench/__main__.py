"""``python -m bench``: measure ingest throughput (against the Quix Streams peer, like for like),
CPU per stored order, end-to-end latency, report cost and freshness (of one store, and of a
50-store chain), orders over HTTP, and the dashboard's reads over a year of reports.

Starts its own Kafka and PostgreSQL on free ports under bench/.work/ and writes the
figures to bench/RESULTS.md. ``--quick`` runs everything small, for development; ``--budget``
measures every target of issues #26 and #20 (and only those) in about 30 minutes on a quiet
machine, each figure over at least 3 runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg

from bench.api import BATCH_CLIENTS, BATCH_SIZE, api_run
from bench.dashboard import STORES, TARGET_P95_MS, dashboard_bench
from bench.disk import DAY_RATES, disk_run
from bench.freshness import freshness_run, freshness_targets, rows
from bench.ingest import PRELOAD_STORES, ingest_run, preload
from bench.latency import latency_run
from bench.profile import LAYER_HEADER, LEAF_HEADER, SAMPLES_PER_SECOND, worker_profile
from bench.quix_peer import COMMIT_INTERVAL, drain_with_peer, quix_python
from bench.reports import HISTORY_RATE, NEW_ORDERS, PROFILED_RUNS, SERVER_WARM_UP_RUNS, reports_bench
from bench.results import Figure, Grid, Report, Section, Table, load_average, median
from bench.soak import POSTGRES_DOWN_SECONDS, samples, second_half, slope_per_hour, slopes, soak_run
from bench.spark_profile import PLANNING
from infra.kafka_broker import GROUP_JOIN_WAIT_MS
from infra.scratch import ScratchStack, scratch_stack
from restaurant_app.settings import Settings

WORK_DIR = Path(__file__).resolve().parent / ".work"
"""Where the bench keeps its own Kafka and PostgreSQL, on free ports: never `make run`'s."""

log = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_RESULTS = Path(__file__).resolve().parent / ".work" / "RESULTS-quick.md"

FULL = {"orders": 200_000, "baseline_orders": 10_000, "runs": 3, "latency_seconds": 60.0,
        "report_sizes": "10000,100000,1000000,5000000", "report_runs": 3, "large_report_runs": 1,
        "full_runs": 1, "full_up_to": 5_000_000, "freshness_minutes": 10,
        "freshness_history": 100_000, "dashboard_days": 365, "dashboard_requests": 200,
        "disk_orders": 10_000, "soak_minutes": 60, "chain_minutes": 10}
QUICK = {"orders": 20_000, "baseline_orders": 1_000, "runs": 3, "latency_seconds": 10.0,
         "report_sizes": "10000,100000", "report_runs": 1, "large_report_runs": 1,
         "full_runs": 1, "full_up_to": 100_000, "freshness_minutes": 3,
         "freshness_history": 10_000, "dashboard_days": 30, "dashboard_requests": 50,
         "disk_orders": 2_000, "soak_minutes": 5, "chain_minutes": 3}
BUDGET = {"orders": 100_000, "baseline_orders": 2_000, "runs": 3, "latency_seconds": 20.0,
          "report_sizes": "100000", "report_runs": 3, "large_report_runs": 1, "full_runs": 1,
          "full_up_to": 100_000, "freshness_minutes": 5, "freshness_history": 20_000,
          "dashboard_days": 30, "dashboard_requests": 50, "disk_orders": 2_000, "soak_minutes": 5,
          "chain_minutes": 3}
"""``--budget``: issue #26's and #20's targets in about 30 minutes (ingest with the peer, latency,
a settled report run with its profile, freshness, the chain, the API), 3 runs each (minutes, for
freshness)."""
BUDGET_PARTS = ("ingest", "latency", "reports", "freshness", "chain", "api")
CHAIN_STORES = 50
PROFILE_LEAVES = 15
"""Functions listed in the worker's profile, busiest first."""
LARGE_REPORT_SIZE = 1_000_000

TWO_WORKERS_TARGET = 25_000
"""Issue #26: orders/s two workers store on this 2-core machine, Kafka and PostgreSQL beside them."""
PEER_RATIO_TARGET = 2.0
"""Issue #26: the worker's rate over the Quix Streams peer's, same process counts, same run."""
CPU_PER_ORDER_TARGET_US = 70
"""Issue #26: CPU µs per stored order, worker + PostgreSQL + Kafka broker."""
P99_TARGET_MS = 50
REPORT_GROWTH_TARGET = 1.5
TARGET_CPU_SECONDS = 1.0
"""Issue #26: CPU seconds per report run on a settled Spark Connect server, job + server."""
API_BATCH_TARGET = 5_000
API_P99_TARGET_MS = 50
API_RATE_SHARE = 0.95
"""The share of the asked single-order rate the requests must reach, answers included."""
WORKER_GROWTH_TARGET = 10.0
"""MiB an hour: a worker growing faster would take 240 MiB more each day."""

INGEST_FIGURES = [
    Figure("orders_per_s", "One worker: orders/s"),
    Figure("two_workers_orders_per_s", "Two workers in one group: orders/s"),
    Figure("peer_orders_per_s", "Quix Streams peer, one process: orders/s"),
    Figure("peer_two_orders_per_s", "Quix Streams peer, two processes in one group: orders/s"),
    Figure("ratio_one", "One worker / one Quix process (same run)", 2),
    Figure("ratio_two", "Two workers / two Quix processes (same run)", 2),
    Figure("rows_per_s", "One worker: rows/s (orders + order lines)"),
    Figure("worker_us_per_order", "One worker: CPU µs per order, worker"),
    Figure("postgres_us_per_order", "One worker: CPU µs per order, PostgreSQL"),
    Figure("kafka_us_per_order", "One worker: CPU µs per order, Kafka broker"),
    Figure("total_us_per_order", "One worker: CPU µs per order, worker + PostgreSQL + broker"),
    Figure("two_workers_worker_us_per_order", "Two workers: CPU µs per order, workers"),
    Figure("two_workers_postgres_us_per_order", "Two workers: CPU µs per order, PostgreSQL"),
    Figure("two_workers_kafka_us_per_order", "Two workers: CPU µs per order, Kafka broker"),
    Figure("two_workers_total_us_per_order", "Two workers: CPU µs per order, workers + PostgreSQL + broker"),
    Figure("peer_total_us_per_order", "One Quix process: CPU µs per order, peer + PostgreSQL + broker"),
    Figure("peer_two_total_us_per_order",
           "Two Quix processes: CPU µs per order, peers + PostgreSQL + broker"),
    Figure("worker_cpu_s", "One worker: CPU seconds while draining", 1),
    Figure("worker_cores", "One worker: cores busy while draining", 2),
    Figure("postgres_cores", "One worker: PostgreSQL cores busy while draining", 2),
    Figure("kafka_cores", "One worker: Kafka broker cores busy while draining", 2),
    Figure("two_workers_cores", "Two workers: cores busy while draining (both)", 2),
    Figure("peak_rss_mib", "One worker: peak memory (RSS, MiB)"),
    Figure("orders_per_batch", "One worker: orders per batch stored", 1),
    Figure("wall_s", "One worker: seconds from process start to last commit", 1),
    Figure("floor_messages_per_s", "Faust alone, agent that only acks (bench/floor.py): messages/s"),
    Figure("baseline_orders_per_s", "Baseline (naive consumer): orders/s"),
    Figure("speedup", "One worker / baseline throughput", 1),
]

LATENCY_FIGURES = [
    Figure("achieved_rate", "Produced orders/s (achieved)"),
    Figure("p50_ms", "p50 (ms)", 1),
    Figure("p95_ms", "p95 (ms)", 1),
    Figure("p99_ms", "p99 (ms)", 1),
    Figure("max_ms", "max (ms)", 1),
    Figure("batches_per_s", "Worker: batches stored per second"),
    Figure("orders_per_batch", "Worker: orders per batch", 1),
    Figure("store_ms_per_batch", "Worker: ms to store a batch (`restaurant_batch_store_seconds`)", 1),
    Figure("worker_us_per_order", "Worker: CPU µs per order at this rate"),
    Figure("worker_cores", "Cores busy while publishing: worker", 2),
    Figure("postgres_cores", "Cores busy while publishing: PostgreSQL", 2),
    Figure("kafka_cores", "Cores busy while publishing: Kafka broker", 2),
    Figure("producer_cores", "Cores busy while publishing: producer (`produce-orders`)", 2),
    Figure("all_cores", "Cores busy while publishing: all of the above", 2),
]

API_FIGURES = [
    Figure("batch_orders_per_s", "Batches: orders/s taken"),
    Figure("batch_p50_ms", "Batches: p50 to the 202 (ms)", 1),
    Figure("batch_p99_ms", "Batches: p99 to the 202 (ms)", 1),
    Figure("batch_cpu_ms", "Batches: worker CPU per request of 100 (ms)", 2),
    Figure("single_requests_per_s", "Single orders: requests/s (achieved)"),
    Figure("single_p50_ms", "Single orders: p50 to the 202 (ms)", 1),
    Figure("single_p99_ms", "Single orders: p99 to the 202 (ms)", 1),
    Figure("single_cpu_ms", "Single orders: worker CPU per request (ms)", 3),
    Figure("orders_stored", "Orders stored, each once"),
]

REPORT_FIGURES = [
    Figure("incremental_s", "Spark, incremental run (s)", 1),
    Figure("warm_incremental_s", "Spark Connect server, incremental run (s)", 1),
    Figure("warm_cpu_s", "Spark Connect server, incremental run: CPU s, job + server", 2),
    Figure("warm_server_cpu_s", "Spark Connect server, incremental run: CPU s, server", 2),
    Figure("full_s", "Spark, full rebuild (s)", 1),
    Figure("sql_new_s", "SQL, minutes of the new orders (s)", 3),
    Figure("sql_all_s", "SQL, all minutes (s)", 2),
]

DISK_FIGURES = [
    Figure("postgres_bytes_per_order", "PostgreSQL: database bytes per order (tables, indexes, TOAST)"),
    Figure("wal_bytes_per_order", "PostgreSQL: WAL bytes written per order"),
    Figure("kafka_log_bytes_per_order", "Kafka: log segment bytes per order"),
    Figure("kafka_disk_bytes_per_order", "Kafka: disk bytes per order (segments, indexes)"),
    *(Figure(f"mib_per_day_at_{rate}", f"PostgreSQL + Kafka segments: MiB per day at {rate:,} orders/min", 1)
      for rate in DAY_RATES),
]

FRESHNESS_FIGURES = [
    Figure("freshness_s", "Minute's end to its complete report committed (s); runs = minutes", 1),
    Figure("wall_s", "Incremental report run: wall seconds (report_runs)", 1),
    Figure("client_cpu_s", "Incremental report run: CPU seconds, job process (client)", 2),
    Figure("server_cpu_s", "Incremental report run: CPU seconds, Spark Connect JVM (server)", 2),
    Figure("cpu_s", "Incremental report run: CPU seconds, client + server", 2),
    Figure("under_way_s", "Minute under way: age of `/api/dashboard/minute`'s answer (s); runs = answers", 2),
]

CHAIN_FIGURES = [
    Figure("freshness_s", "Minute's end to the complete report of every store and the chain (s);"
                          " runs = minutes", 1),
    Figure("ingest_per_s", "Orders stored per second over the measured minutes", 1),
    Figure("wall_s", "Incremental report run: wall seconds (report_runs)", 1),
    Figure("cpu_s", "Incremental report run: CPU seconds, client + server", 2),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true",
                       help="small sizes and short runs, written to bench/.work/RESULTS-quick.md")
    sizes.add_argument("--budget", action="store_true",
                       help="the targets of issues #26 and #20 only (" + ", ".join(BUDGET_PARTS) + "), 3 runs"
                            " each, in about 30 minutes on a quiet machine; written to bench/RESULTS.md")
    parser.add_argument("--only", choices=("ingest", "latency", "reports", "freshness", "chain", "api",
                                           "dashboard", "disk", "soak"),
                        action="append",
                        help="run only this part (may be repeated)")
    parser.add_argument("--orders", type=int, help="orders preloaded for the ingest test (200,000)")
    parser.add_argument("--baseline-orders", type=int,
                        help="orders the naive baseline consumer stores in each run (10,000)")
    parser.add_argument("--runs", type=int, help="runs of each ingest and latency measurement (3)")
    parser.add_argument("--latency-rate", type=float, default=1000.0, help="orders/s (1,000)")
    parser.add_argument("--api-rate", type=float, default=1000.0,
                        help="single-order requests/s to POST /api/orders (1,000)")
    parser.add_argument("--latency-seconds", type=float, help="length of a latency run (60)")
    parser.add_argument("--report-sizes",
                        help="orders in the table for the report runs (10000,100000,1000000,5000000)")
    parser.add_argument("--report-runs", type=int,
                        help=f"incremental report runs at sizes below {LARGE_REPORT_SIZE:,} (3)")
    parser.add_argument("--large-report-runs", type=int,
                        help=f"incremental report runs at sizes from {LARGE_REPORT_SIZE:,} on (1)")
    parser.add_argument("--full-runs", type=int, help="full rebuilds at each size (1)")
    parser.add_argument("--full-up-to", type=int,
                        help="largest size with full rebuilds (5,000,000; each reads every order)")
    parser.add_argument("--freshness-minutes", type=int,
                        help="closed minutes over which report freshness is measured (10)")
    parser.add_argument("--freshness-history", type=int,
                        help="older orders in the table while freshness is measured (100,000)")
    parser.add_argument("--chain-minutes", type=int,
                        help=f"closed minutes over which a {CHAIN_STORES}-store chain's freshness"
                             " is measured (10)")
    parser.add_argument("--dashboard-days", type=int,
                        help="days of a 50-store chain's reports behind the dashboard's reads (365)")
    parser.add_argument("--dashboard-requests", type=int,
                        help="timed requests to each dashboard endpoint (200)")
    parser.add_argument("--disk-orders", type=int, help="orders stored to measure disk use (10,000)")
    parser.add_argument("--disk-rate", type=float, default=100.0,
                        help="orders/s published while disk use is measured (100)")
    parser.add_argument("--soak-minutes", type=int, default=os.environ.get("SOAK_MINUTES") or None,
                        help="length of the soak (SOAK_MINUTES, else 60; --quick: 5)")
    parser.add_argument("--soak-rate", type=float, default=20.0,
                        help="orders/s published through the soak (20)")
    parser.add_argument("--quix-python",
                        help="the Python of a virtualenv with quixstreams for the peer (else one made"
                             " in .stack/quix on first use)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated orders (42)")
    parser.add_argument("--output", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else BUDGET if args.budget else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    args.only = set(args.only or (BUDGET_PARTS if args.budget else MEASUREMENTS))
    args.report_sizes = [int(size) for size in str(args.report_sizes).split(",")]
    return args


def measure_ingest(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        f"Ingest: {args.orders:,} preloaded orders",
        f"The real worker (`faust -A restaurant_app worker -l warn`, a new consumer group and an"
        f" empty database each run) drains a topic preloaded with {args.orders:,} orders of"
        f" {PRELOAD_STORES} stores (seed {args.seed}, by `produce-orders`; Kafka keys an order by"
        f" its store, so they spread over the topic's partitions); then two workers in one group."
        f" The broker waits {GROUP_JOIN_WAIT_MS / 1000:g} s for an empty group's members before its first"
        f" assignment (`group.initial.rebalance.delay.ms`, Kafka's default, as the product's brokers"
        f" have it): two processes started together share the partitions from the start."
        f" In the same run the Quix Streams peer (`bench/quix_peer.py`: Quix Streams 3.28, its stock"
        f" `PostgreSQLSink`, the same rows) drains the same topic with one process, then two in one"
        f" group: like for like. As the worker stores into the tables its migrations made, the peer"
        f" stores into tables the bench made (`schema_auto_update=False`: left on, each of its writes"
        f" takes an exclusive lock on its table, and two processes wait for each other), and as the"
        f" worker stores batches of at most {Settings.from_env().batch_max_orders:,} orders"
        f" (`BATCH_MAX_ORDERS`), the peer checkpoints (writes its sinks' batches) every as many"
        f" messages (`commit_every`, the setting Quix's docs give to bound a sink's batches) or"
        f" {COMMIT_INTERVAL:g} s (`commit_interval`; Quix's default 5 s would leave a drain of a few"
        f" seconds only two or three commits to be timed by). Rates count what was committed after"
        f" the first commit, over the time from the first commit to the last (PostgreSQL commit"
        f" timestamps); CPU is measured over the same window, per component (the worker processes"
        f" or the peer's, PostgreSQL's processes, the Kafka broker's JVM). The baseline is"
        f" `bench/baseline.py`, the usual tutorial consumer (one message, one INSERT per table, one"
        f" commit), timed the same way over the first {args.baseline_orders:,} orders of the same"
        f" topic in the same run. Faust alone is `bench/floor.py`: the product's Faust settings and"
        f" batches, an agent that only acknowledges, over the first quarter of the topic: the most"
        f" one worker process can do"
        f" before validation and storage.",
        INGEST_FIGURES,
    )
    report.sections.append(section)
    python = peer_python(args, report)
    topic = preload(stack, args.orders, args.seed)
    for number in range(1, args.runs + 1):
        log.info("Ingest run %d of %d ...", number, args.runs)
        figures = ingest_run(stack, topic, args.orders, args.baseline_orders, number)
        if python is not None:
            try:
                figures.update(peer_figures(stack, python, topic, args.orders, number, figures))
            except (RuntimeError, subprocess.SubprocessError, psycopg.Error) as exc:
                log.error("The Quix Streams peer failed in run %d: %s", number, exc)
                report.notes.append(f"Ingest run {number}: the Quix Streams peer failed ({exc}); the"
                                    " worker's figures of that run stand, without a ratio.")
        section.runs.append(figures)
    report.targets.extend(ingest_targets(section.runs))
    profile_worker(stack, topic, args.orders, median([run["worker_us_per_order"] for run in section.runs]),
                   report)


def profile_worker(stack: ScratchStack, topic: str, orders: int, us_per_order: float, report: Report
                   ) -> None:
    """Where one worker's CPU goes: py-spy samples one more drain of the ingest topic, and each
    layer's share of the samples is that share of the runs' median worker CPU per order."""
    log.info("Profiling one worker (py-spy) over the same topic ...")
    try:
        samples = worker_profile(stack, topic, orders, run=0)
    except (RuntimeError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        log.error("The worker's profile failed: %s", exc)
        report.notes.append(f"The worker's profile was not taken: {exc}")
        return
    intro = (f"One more worker drains the ingest topic while `py-spy record --rate {SAMPLES_PER_SECOND}`"
             f" samples its Python stacks from outside (not counted in the figures above: the sampling"
             f" slows it). A sample waiting in the event loop's `select` is idle and left out; each of"
             f" the other {samples.total:,} goes to the first layer with a frame in its stack, from the"
             f" leaf up (a call into psycopg from the agent is storage; C code counts for the Python"
             f" frame that called it). py-spy counts a thread the machine left waiting for a core as"
             f" busy, so only the shares are used: µs/order is a layer's share of the one worker's"
             f" median CPU per order above ({us_per_order:.0f} µs).")
    report.sections.append(Table("Where one worker's CPU goes (py-spy)", intro, LAYER_HEADER,
                                 samples.layer_rows(us_per_order)))
    report.sections.append(Table(f"The worker's {PROFILE_LEAVES} busiest functions (py-spy, self time)",
                                 "The same samples by the function at the top of the stack.", LEAF_HEADER,
                                 samples.leaf_rows(us_per_order, PROFILE_LEAVES)))


def peer_python(args: argparse.Namespace, report: Report) -> str | None:
    """The Quix Streams peer's Python; None, noted, if it cannot be had."""
    try:
        return quix_python(args.quix_python)
    except (OSError, subprocess.CalledProcessError) as exc:
        log.error("No Quix Streams for the peer: %s", exc)
        report.notes.append(f"The Quix Streams peer was not measured: no virtualenv for it ({exc}).")
        return None


def peer_figures(stack: ScratchStack, python: str, topic: str, orders: int, run: int,
                 worker: dict[str, float]) -> dict[str, float]:
    """The peer with one process and with two over the same topic, and the worker's ratios to it."""
    one = drain_with_peer(stack, python, topic, orders, run, processes=1)
    log.info("  Quix, one process: %s orders/s", f"{one['orders_per_s']:,.0f}")
    two = drain_with_peer(stack, python, topic, orders, run, processes=2)
    log.info("  Quix, two processes: %s orders/s", f"{two['orders_per_s']:,.0f}")
    return {"peer_orders_per_s": one["orders_per_s"], "peer_two_orders_per_s": two["orders_per_s"],
            "ratio_one": worker["orders_per_s"] / one["orders_per_s"],
            "ratio_two": worker["two_workers_orders_per_s"] / two["orders_per_s"],
            "peer_total_us_per_order": one["total_us_per_order"],
            "peer_two_total_us_per_order": two["total_us_per_order"]}


def ingest_targets(runs: list[dict[str, float]]) -> list[tuple[str, str, bool]]:
    """Issue #26's ingest targets: two workers' rate, twice the peer like for like, CPU per order."""
    def middle(key: str) -> float:
        values = [run[key] for run in runs if key in run]
        return median(values) if values else math.nan

    pair_rate = middle("two_workers_orders_per_s")
    targets = [(f"Two workers ingest at least {TWO_WORKERS_TARGET:,} orders/s on 2 cores (#26)",
                f"{pair_rate:,.0f} orders/s (one worker {middle('orders_per_s'):,.0f})",
                pair_rate >= TWO_WORKERS_TARGET)]
    for processes, prefix, ratio in ((1, "", "ratio_one"), (2, "two_workers_", "ratio_two")):
        peer = middle("peer_orders_per_s" if processes == 1 else "peer_two_orders_per_s")
        mine = middle(f"{prefix}orders_per_s")
        each = "one process each" if processes == 1 else "two processes each"
        targets.append((f"At least {PEER_RATIO_TARGET:g}x the Quix Streams peer, {each}, same run (#26)",
                        "peer not measured" if math.isnan(peer) else
                        f"{middle(ratio):.2f}x (median of the runs' ratios; {mine:,.0f} against"
                        f" {peer:,.0f} orders/s)", middle(ratio) >= PEER_RATIO_TARGET))
    for prefix, who in (("", "one worker"), ("two_workers_", "two workers")):
        parts = [middle(f"{prefix}{part}_us_per_order") for part in ("worker", "postgres", "kafka")]
        total = middle(f"{prefix}total_us_per_order")
        targets.append((f"At most {CPU_PER_ORDER_TARGET_US} CPU µs per stored order, worker + PostgreSQL"
                        f" + Kafka broker ({who}; #26)",
                        f"{total:.0f} µs: worker {parts[0]:.0f}, PostgreSQL {parts[1]:.0f}, broker"
                        f" {parts[2]:.0f}", total <= CPU_PER_ORDER_TARGET_US))
    return targets


def measure_latency(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        f"Latency at {args.latency_rate:,.0f} orders/s",
        f"`produce-orders --rate {args.latency_rate:.0f}` publishes for {args.latency_seconds:.0f} s"
        f" to an idle, warmed-up worker. Latency is the commit time of the order's transaction in"
        f" PostgreSQL less the Kafka message's CreateTime set by the producer (1 ms resolution)."
        f" The worker's batches over the same time come from its `/metrics`: a batch is stored once"
        f" the worker has taken every message it read (or once full, or after"
        f" `BATCH_WITHIN_SECONDS`), so the time a message waits is mostly the batch before its own."
        f" Cores busy are each process's CPU seconds over the publishing time (PostgreSQL's and"
        f" the worker's whole process trees, the broker's JVM, the producer's process): on this"
        f" machine's cores they all share, a message waits for a core as well as for its batch.",
        LATENCY_FIGURES,
    )
    report.sections.append(section)
    for number in range(1, args.runs + 1):
        log.info("Latency run %d of %d ...", number, args.runs)
        section.runs.append(
            latency_run(stack, args.latency_rate, args.latency_seconds, args.seed, number)
        )
        log.info("  p99 %.1f ms", section.runs[-1]["p99_ms"])
    p99 = median([run["p99_ms"] for run in section.runs])
    p99s = [run["p99_ms"] for run in section.runs]
    report.targets.append((f"p99 produce-to-commit at most {P99_TARGET_MS} ms at {args.latency_rate:,.0f}"
                           " orders/s (#26)", f"{p99:.0f} ms (min {min(p99s):.0f}, max {max(p99s):.0f},"
                           f" {len(p99s)} runs)", p99 <= P99_TARGET_MS))


def measure_reports(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    grid = Grid(
        "Reports",
        f"One database grows through the sizes: a history bulk-loaded in SQL at {HISTORY_RATE:g}"
        f" orders/s going back in time (5M orders are about 29 days), so a bigger table is a"
        f" longer history. At each size: `python -m spark_reports --full`, then, each time after"
        f" storing {NEW_ORDERS} new orders (one minute's worth) through the product's save path"
        f" in a minute of their own (the one after the last run's, as if a minute had passed),"
        f" `python -m spark_reports`; wall-clock time of the whole command, Spark start-up"
        f" included; then as many incremental runs against a Spark Connect server the bench"
        f" started once (`SPARK_REMOTE`), each forked by the worker's runner from its fork"
        f" server, as `make run` does, measured after"
        f" {SERVER_WARM_UP_RUNS} unmeasured runs at the first size have let the server's JIT"
        f" settle (the freshness section measures a fresh server). Beside them, the per-minute figures"
        f" of `report_sales` as one SQL query in"
        f" PostgreSQL, over all minutes and over the minutes of the new orders only (rows fetched"
        f" by the client; no hours, days or insights). Cells: median (min-max, runs).",
        "Orders in the table",
        REPORT_FIGURES,
    )
    report.sections.append(grid)
    plan = {
        size: (args.large_report_runs if size >= LARGE_REPORT_SIZE else args.report_runs,
               args.full_runs if size <= args.full_up_to else 0)
        for size in args.report_sizes
    }
    failures: list[str] = []
    profile: Counter[str] = Counter()
    try:
        reports_bench(stack, plan, args.seed, grid.rows, failures, profile)
    finally:
        report.notes.extend(failures)
    skipped = [f"{size:,}" for size, (_, full) in plan.items() if not full]
    if skipped:
        report.notes.append(
            f"No full rebuild at {', '.join(skipped)} orders (`--full-up-to {args.full_up_to}`):"
            " a full rebuild reads every order, which would take this run past its time budget."
            " There, the incremental runs follow the bulk load of the older history directly, so"
            " the report tables hold the windows computed at the smaller sizes."
        )
    first = grid.rows.get(min(plan), {})
    if first.get("warm_cpu_s"):
        settled = first["warm_cpu_s"]
        report.targets.append((
            f"At most {TARGET_CPU_SECONDS:g} CPU-second per report run on a settled server (job +"
            f" Spark Connect server, median; {min(plan):,} orders, after {SERVER_WARM_UP_RUNS} unmeasured"
            " runs; the profile of its server below; #26)",
            f"{median(settled):.2f} s (min {min(settled):.2f}, max {max(settled):.2f},"
            f" {len(settled)} runs)", median(settled) <= TARGET_CPU_SECONDS,
        ))
    if profile:
        report.sections.append(settled_profile(profile, min(plan), median(first["warm_server_cpu_s"])))
    sizes = [size for size in (100_000, 5_000_000) if size in grid.rows]
    if len(sizes) == 2:
        small, large = (median(grid.rows[size]["incremental_s"]) for size in sizes)
        report.targets.append((
            f"Incremental report run within {REPORT_GROWTH_TARGET}x from 100k to 5M orders",
            f"{small:.1f} s to {large:.1f} s: {large / small:.2f}x", large / small <= REPORT_GROWTH_TARGET,
        ))


def settled_profile(profile: Counter[str], size: int, server_cpu: float) -> Table:
    """The settled server's samples by phase of Spark's work, and what each costs a run."""
    total = sum(profile.values())
    planning = sum(profile[name] for name in PLANNING) / total
    intro = (
        f"After the measured runs at {size:,} orders, {PROFILED_RUNS} more on the same settled server"
        f" while Java Flight Recorder's sampling profiler records its JVM (`jcmd JFR.start`;"
        f" `bench/spark_profile.py`, not in the figures above: its sampling adds to the runs it"
        f" records), {total:,} samples. A sample counts for the first phase of Spark's work found"
        f" from its leaf frame up; CPU s per run is a phase's share of the measured runs' median"
        f" server CPU ({server_cpu:.2f} s). Planning the run's Spark jobs (analysis, optimizer,"
        f" physical planning, Spark Connect's translation) takes {planning:.0%} of the samples;"
        f" its cost grows with the size of the plans, set by the report's figures (the recomputed"
        f" minutes' aggregation, the insights), not with the orders read. A run is four Spark jobs"
        f" (three `localCheckpoint`s in `spark_reports.aggregations.kept`, then the write of the"
        f" staged rows), and fewer do not cost less: measured with three and with two, a run cost"
        f" the same, each plan bigger (the hand-written part below, 2026-12-03). A run under the"
        f" target needs smaller plans: PostgreSQL computing the recomputed minutes (as"
        f" `restaurant_app.minute_figures` already does for the closed ones), Spark left with the"
        f" insights and customers."
    )
    rows = [[name, f"{count / total:.1%}", f"{count / total * server_cpu:.2f}"]
            for name, count in profile.most_common()]
    return Table("Where a settled report run's server CPU goes (Java Flight Recorder)", intro,
                 ["phase of Spark's work (leaf-first attribution)", "share", "CPU s per run"], rows)


def measure_freshness(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        f"Report freshness over {args.freshness_minutes} minutes",
        f"A real worker places about 3 orders/s with its generator (scaled by the hour's demand)"
        f" over {args.freshness_history:,} bulk-loaded older orders, and launches the report job"
        f" on its own timer at each minute boundary plus the grace (5 s), against a Spark Connect"
        f" server started by the bench (`SPARK_REMOTE`). Every 0.5 s the bench reads each"
        f" minute's `report_sales` row and the commit time of the transaction that published it;"
        f" a minute's freshness is the time from its end to the commit of the first row whose"
        f" `orders` equals that minute's orders in the table (earlier, incomplete rows do not"
        f" count). Costs per incremental run: wall from `report_runs`; client CPU is what the"
        f" worker started (its fork server and the `python -m spark_reports` runs forked from"
        f" it), server CPU the Spark Connect JVM's, each the change between the samples around"
        f" the run. At each poll the bench also asks `/api/dashboard/minute`, as the dashboard's"
        f" page does every second: an answer's age is the time from the moment its figures were"
        f" last complete (the creation of the first order of that minute it lacks, else the moment"
        f" it was asked) to its arrival.",
        FRESHNESS_FIGURES,
    )
    report.sections.append(section)
    log.info("Freshness over %d minute(s) ...", args.freshness_minutes)
    figures = freshness_run(stack, args.freshness_minutes, args.freshness_history, args.seed)
    section.runs.extend(rows(figures))
    report.targets.extend(freshness_targets(figures))
    missing = figures["delays"].count(None)
    if missing:
        report.notes.append(f"Freshness: {missing} of {len(figures['delays'])} minute(s) never"
                            " had a complete report while measured.")


def measure_chain(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        f"A {CHAIN_STORES}-store chain through the pipeline over {args.chain_minutes} minutes",
        f"As the freshness section, with the generator simulating {CHAIN_STORES} stores"
        f" (`SIMULATED_STORES={CHAIN_STORES}`, each 0.5 to 2 times the base rate of 3 orders a"
        f" second, scaled by the hour's demand) over {args.freshness_history:,} older orders. A"
        f" minute is fresh once the chain's row and the row of every store with orders in that"
        f" minute hold all of them: its freshness is the time from its end to the commit of the"
        f" last of those. Ingest: the orders stored over the measured minutes, per second.",
        CHAIN_FIGURES,
    )
    report.sections.append(section)
    log.info("A %d-store chain over %d minute(s) ...", CHAIN_STORES, args.chain_minutes)
    figures = freshness_run(stack, args.chain_minutes, args.freshness_history, args.seed, CHAIN_STORES)
    section.runs.extend(rows(figures))
    report.targets.extend(freshness_targets(figures, CHAIN_STORES))


def measure_api(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        "Orders over HTTP (POST /api/orders)",
        f"One worker (simulator off) takes orders over HTTP from an aiohttp client in the bench's"
        f" process: {BATCH_CLIENTS} clients posting batches of {BATCH_SIZE} back to back for"
        f" {args.latency_seconds:.0f} s, then single-order requests started at"
        f" {args.api_rate:,.0f}/s for as long, whatever the answers. Latency is from sending a"
        f" request to its 202 (after Kafka's acknowledgement, acks=all). Every order taken is then"
        f" checked stored exactly once. Worker CPU: the worker process's user and system time over"
        f" each part, until its orders are stored (taking them over HTTP, publishing and storing"
        f" them), per request, which depends less on the machine's other load than rates and latencies.",
        API_FIGURES,
    )
    report.sections.append(section)
    for number in range(1, args.runs + 1):
        log.info("API run %d of %d ...", number, args.runs)
        section.runs.append(api_run(stack, args.latency_seconds, args.api_rate, args.seed, number))
    batches = median([run["batch_orders_per_s"] for run in section.runs])
    p99 = median([run["single_p99_ms"] for run in section.runs])
    singles = median([run["single_requests_per_s"] for run in section.runs])
    report.targets.append((f"At least {API_BATCH_TARGET:,} orders/s in batches of {BATCH_SIZE} over HTTP"
                           " (#20)",
                           f"{batches:,.0f} orders/s", batches >= API_BATCH_TARGET))
    report.targets.append((f"{args.api_rate:,.0f} single-order requests/s over HTTP with p99 at most"
                           f" {API_P99_TARGET_MS} ms (#20)", f"{singles:,.0f} requests/s, p99 {p99:.0f} ms",
                           singles >= API_RATE_SHARE * args.api_rate and p99 <= API_P99_TARGET_MS))


def measure_dashboard(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    table = Table(
        f"Dashboard over {args.dashboard_days} days of a {STORES}-store chain's reports",
        f"The report tables filled in bulk in SQL (`bench/dashboard.py`) with {args.dashboard_days} days"
        f" of reports at {STORES} stores' volume (400 orders a store a day, 11:00 to 23:00): a minute"
        f" row for each open minute, hours and days added up from them, every dish of every window,"
        f" the customers of each hour and day, the unique customers of each week and month (as the"
        f" report job keeps them), two insights an hour, as the chain's rows (`store_id` ''); and each"
        f" store's share of the hours and days, with their dishes, customers and insights (not its"
        f" minutes), read as the chain's and as one store's (`store=loja-07`). The orders of the last"
        f" 48 hours at the same volume (40,000, spread evenly), for today so far and yesterday. A real worker"
        f" (`faust -A restaurant_app worker`) answers; each endpoint gets"
        f" {args.dashboard_requests} requests one after another on one kept-alive connection, after 10"
        f" unmeasured ones, the history's on days spread over the year. Milliseconds from the request"
        f" sent to the whole answer read.",
        ["Endpoint", "p50 (ms)", "p95 (ms)", "max (ms)", "requests"],
    )
    report.sections.append(table)
    log.info("Dashboard over %d days of reports ...", args.dashboard_days)
    rows, figures = dashboard_bench(stack, args.dashboard_days, args.dashboard_requests)
    table.intro += " Rows: " + ", ".join(f"`{name}` {count:,}" for name, count in rows.items()) + "."
    for path, measured in figures.items():
        table.rows.append([f"`{path}`", f"{measured['p50_ms']:.1f}", f"{measured['p95_ms']:.1f}",
                           f"{measured['max_ms']:.1f}", str(measured["requests"])])
    slowest = max(figures, key=lambda path: figures[path]["p95_ms"])
    worst = figures[slowest]["p95_ms"]
    report.targets.append((
        f"`/api/dashboard/*` p95 at most {TARGET_P95_MS:.0f} ms over {args.dashboard_days} days of a"
        f" {STORES}-store chain's reports", f"slowest p95 {worst:.1f} ms (`{slowest}`)",
        worst <= TARGET_P95_MS))


def measure_disk(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    section = Section(
        f"Disk use: {args.disk_orders:,} orders at {args.disk_rate:,.0f}/s",
        f"A real worker stores {args.disk_orders:,} generated orders (seed {args.seed}) published by"
        f" `produce-orders --rate {args.disk_rate:.0f}` into an empty database and a new topic (6"
        f" partitions, one copy). Bytes per order: the growth of `pg_database_size` (after a"
        f" CHECKPOINT), the WAL written (`pg_current_wal_insert_lsn` before and after), and the"
        f" growth of the topic's log segments (`*.log`) and of all its files' disk blocks. A day:"
        f" database and segment bytes per order times the orders of a day; the WAL is recycled"
        f" after checkpoints (a replica or an archive receives all of it).",
        DISK_FIGURES,
    )
    report.sections.append(section)
    log.info("Disk use of %d orders ...", args.disk_orders)
    section.runs.append(disk_run(stack, args.disk_orders, args.disk_rate, args.seed))


def measure_soak(stack: ScratchStack, args: argparse.Namespace, report: Report) -> None:
    minutes, rate = args.soak_minutes, args.soak_rate
    log.info("Soak for %d minute(s) at %.0f orders/s ...", minutes, rate)
    soak = soak_run(stack, minutes, rate, args.seed)
    intro = (
        f"A real worker (reports every minute on a Spark Connect server the bench started) stores"
        f" the orders `produce-orders --rate {rate:.0f}` publishes for {minutes} minutes"
        f" ({soak.published:,} orders). A third of the way in PostgreSQL is stopped for"
        f" {POSTGRES_DOWN_SECONDS:.0f} s and started again; two thirds in, the worker is stopped"
        f" (SIGTERM) and a new one started. Every minute: the resident memory of each process"
        f" and its children (`_rss_mib`; the worker alone, and its fork server with any report job"
        f" running at that moment apart; PostgreSQL's `_pss_mib` splits its shared buffers among its"
        f" processes), `pg_database_size`, the WAL written since the start and the `pg_wal`"
        f" folder, the topic's disk blocks, the worker's `restaurant_consumer_lag_messages` and"
        f" the orders stored. Slopes: least squares against time, per hour, over the whole run"
        f" and over its second half (after both restarts). {'; '.join(soak.events)}. At the end"
        f" {soak.stored:,} of {soak.published:,} published orders were stored (each once: `order_id`"
        f" is the key), {soak.rejected} rejected.")
    report.sections.append(Table(f"Soak: {minutes} minutes at {rate:.0f} orders/s", intro,
                                 ["Series", "first", "last", "slope/h, whole run", "slope/h, second half"],
                                 slopes(soak)))
    header, rows = samples(soak)
    report.sections.append(Table("Soak: the samples, a minute apart",
                                 "An empty cell could not be read at that moment (the worker restarting,"
                                 " PostgreSQL down). Memory and disk in MiB.", header, rows))
    report.targets.append(("Soak: every published order stored through a PostgreSQL and a worker restart",
                           f"{soak.stored:,} of {soak.published:,}", soak.stored == soak.published))
    growth = slope_per_hour(*second_half(soak, soak.series["worker_rss_mib"]))
    report.targets.append((
        f"Soak: the worker's memory levels off (second half under {WORKER_GROWTH_TARGET:.0f} MiB an hour)",
        "n/a" if growth is None else f"{growth:,.1f} MiB/h",
        growth is not None and growth < WORKER_GROWTH_TARGET))


MEASUREMENTS = {"ingest": measure_ingest, "latency": measure_latency, "reports": measure_reports,
                "freshness": measure_freshness, "chain": measure_chain, "api": measure_api,
                "dashboard": measure_dashboard, "disk": measure_disk, "soak": measure_soak}


def run(args: argparse.Namespace, report: Report) -> bool:
    """Run the chosen measurements; one that fails is noted and the others still run."""
    succeeded = True
    with scratch_stack(WORK_DIR, commit_timestamps=True) as stack:
        for name, measure in MEASUREMENTS.items():
            if name not in args.only:
                continue
            try:
                measure(stack, args, report)
            except (RuntimeError, TimeoutError, psycopg.Error) as exc:
                log.error("The %s measurement failed: %s", name, exc)
                report.notes.append(f"The {name} measurement failed: {exc}")
                succeeded = False
    return succeeded


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    report = Report(" ".join(["python -m bench", shlex.join(arguments)]).strip())
    log.info("Load average at start: %s", report.load_at_start)
    succeeded = run(args, report)
    report.write(args.output)
    log.info("Load average at end: %s; results written to %s", load_average(), args.output)
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
