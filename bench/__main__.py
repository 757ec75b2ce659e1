"""``python -m bench``: measure ingest throughput, end-to-end latency and report cost.

Starts its own Kafka and PostgreSQL on free ports under bench/.work/ and writes the
figures to bench/RESULTS.md. ``--quick`` runs everything small, for development.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from bench.ingest import ingest_run, preload
from bench.latency import latency_run
from bench.results import Figure, Report, Section, load_average
from bench.stack import bench_stack

log = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_RESULTS = Path(__file__).resolve().parent / ".work" / "RESULTS-quick.md"

FULL = {"orders": 200_000, "baseline_orders": 10_000, "runs": 3, "latency_seconds": 60.0}
QUICK = {"orders": 20_000, "baseline_orders": 1_000, "runs": 3, "latency_seconds": 10.0}

INGEST_FIGURES = [
    Figure("orders_per_s", "Worker: orders/s"),
    Figure("rows_per_s", "Worker: rows/s (orders + order lines)"),
    Figure("worker_cpu_s", "Worker: CPU seconds while draining", 1),
    Figure("worker_cores", "Worker: cores busy while draining", 2),
    Figure("postgres_cores", "PostgreSQL: cores busy while draining", 2),
    Figure("kafka_cores", "Kafka broker: cores busy while draining", 2),
    Figure("peak_rss_mib", "Worker: peak memory (RSS, MiB)"),
    Figure("wall_s", "Worker: seconds from process start to last commit", 1),
    Figure("baseline_orders_per_s", "Baseline (naive consumer): orders/s"),
    Figure("speedup", "Worker / baseline throughput", 1),
]

LATENCY_FIGURES = [
    Figure("achieved_rate", "Produced orders/s (achieved)"),
    Figure("p50_ms", "p50 (ms)", 1),
    Figure("p95_ms", "p95 (ms)", 1),
    Figure("p99_ms", "p99 (ms)", 1),
    Figure("max_ms", "max (ms)", 1),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short runs, written to bench/.work/RESULTS-quick.md")
    parser.add_argument("--only", choices=("ingest", "latency", "reports"), action="append",
                        help="run only this part (may be repeated)")
    parser.add_argument("--orders", type=int, help="orders preloaded for the ingest test (200,000)")
    parser.add_argument("--baseline-orders", type=int,
                        help="orders the naive baseline consumer stores in each run (10,000)")
    parser.add_argument("--runs", type=int, help="runs of each ingest and latency measurement (3)")
    parser.add_argument("--latency-rate", type=float, default=1000.0, help="orders/s (1,000)")
    parser.add_argument("--latency-seconds", type=float, help="length of a latency run (60)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated orders (42)")
    parser.add_argument("--output", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    args.only = set(args.only or ("ingest", "latency", "reports"))
    return args


def ingest_section(args: argparse.Namespace) -> Section:
    return Section(
        f"Ingest: {args.orders:,} preloaded orders",
        f"The real worker (`faust -A restaurant_app worker -l warn`, a new consumer group and an empty"
        f" database each run) drains a topic preloaded with {args.orders:,} orders (seed {args.seed},"
        f" by `produce-orders`). Rates count what was committed after the first commit, over the time"
        f" from the first commit to the last (PostgreSQL commit timestamps); CPU is measured over"
        f" the same window. The baseline is `bench/baseline.py`, the usual tutorial consumer (one"
        f" message, one INSERT per table, one commit), timed the same way over the first"
        f" {args.baseline_orders:,} orders of the same topic in the same run.",
        INGEST_FIGURES,
    )


def latency_section(args: argparse.Namespace) -> Section:
    return Section(
        f"Latency at {args.latency_rate:,.0f} orders/s",
        f"`produce-orders --rate {args.latency_rate:.0f}` publishes for {args.latency_seconds:.0f} s"
        f" to an idle, warmed-up worker. Latency is the commit time of the order's transaction"
        f" in PostgreSQL less the Kafka message's CreateTime set by the producer (1 ms resolution).",
        LATENCY_FIGURES,
    )


def run(args: argparse.Namespace, report: Report) -> None:
    with bench_stack() as stack:
        if "ingest" in args.only:
            section = ingest_section(args)
            report.sections.append(section)
            topic = preload(stack, args.orders, args.seed)
            for number in range(1, args.runs + 1):
                log.info("Ingest run %d of %d ...", number, args.runs)
                section.runs.append(ingest_run(stack, topic, args.orders, args.baseline_orders, number))
        if "latency" in args.only:
            section = latency_section(args)
            report.sections.append(section)
            for number in range(1, args.runs + 1):
                log.info("Latency run %d of %d ...", number, args.runs)
                section.runs.append(
                    latency_run(stack, args.latency_rate, args.latency_seconds, args.seed, number)
                )
                log.info("  p99 %.1f ms", section.runs[-1]["p99_ms"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    command = " ".join(["python -m bench", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    report = Report(command)
    log.info("Load average at start: %s", report.load_at_start)
    run(args, report)
    report.write(args.output)
    log.info("Load average at end: %s; results written to %s", load_average(), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
