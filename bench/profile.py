"""``python -m bench.profile``: where the worker's CPU goes per stored order, measured with py-spy.

Starts a scratch Kafka and PostgreSQL under bench/.work/, preloads a topic, and lets the real
worker drain it while py-spy samples it. Prints CPU µs per order for the worker, PostgreSQL, the
Kafka broker and their sum, the load average, and the worker's samples grouped by layer and by
function (µs per order).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.commits import commit_timeline
from bench.ingest import group_of_workers, preload
from bench.monitor import CpuMonitor
from bench.pipeline import pipeline_env, wait_for_orders
from bench.results import load_average, run_line, run_summary
from infra.scratch import ScratchStack, scratch_stack

WORK_DIR = Path(__file__).resolve().parent / ".work"
PY_SPY = Path(sys.executable).with_name("py-spy")
SAMPLES_PER_SECOND = 200

# A sample belongs to the first layer whose marker is in one of its frames, leaf first, up to the
# event loop's own frames: what runs the loop (Faust's command line, mode's worker) is below them,
# so a sample that reaches them first is the loop's own work.
IDLE = "select (selectors.py"
EVENT_LOOP = ("asyncio/base_events.py", "asyncio/events.py")
LAYERS = (
    ("imports (start-up, lazy imports)", ("<frozen importlib",)),
    ("validation", ("restaurant_app/validation.py", "restaurant_app/models.py", "json/")),
    ("storage (psycopg, order_sink)",
     ("psycopg", "restaurant_app/order_sink.py", "restaurant_app/database.py")),
    ("metrics (prometheus_client, metrics.py, lean_monitor.py)",
     ("prometheus_client", "restaurant_app/metrics.py", "restaurant_app/lean_monitor.py")),
    ("faust sensors/monitor", ("faust/sensors",)),
    ("aiokafka fetch/parse (kafka_records.py)", ("aiokafka", "restaurant_app/kafka_records.py")),
    ("faust stream/consumer/acks (fast_consumer.py, batches.py)",
     ("faust/", "mode/services.py", "mode/utils", "restaurant_app/fast_consumer.py",
      "restaurant_app/kafka_transport.py", "restaurant_app/batches.py")),
    ("agent (persistence.py)", ("agents/persistence.py",)),
)

LAYER_HEADER = ["layer (leaf-first attribution)", "share", "µs/order"]
LEAF_HEADER = ["leaf function (self time)", "share", "µs/order"]

log = logging.getLogger("bench")


def frames(stack: str) -> list[str]:
    """The frames of one py-spy raw (collapsed) stack, leaf first."""
    return stack.split(";")[::-1]


def layer_of(stack: list[str]) -> str:
    """The layer of a stack given leaf first."""
    for frame in stack:
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
        if any(loop in frame for loop in EVENT_LOOP):
            return "asyncio event loop"
    return "other"


@dataclass
class Samples:
    """py-spy's busy samples of one process (not waiting in the selector), by layer and by leaf."""

    layers: collections.Counter[str] = field(default_factory=collections.Counter)
    leaves: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def total(self) -> int:
        return sum(self.layers.values())

    @classmethod
    def read(cls, raw: Path) -> Samples:
        """The samples of a py-spy raw (collapsed) file: one stack and its count a line."""
        samples = cls()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            stack_frames = frames(stack)
            if stack and IDLE not in stack_frames[0]:
                samples.layers[layer_of(stack_frames)] += int(count)
                samples.leaves[stack_frames[0]] += int(count)
        return samples

    def layer_rows(self, us_per_order: float) -> list[list[str]]:
        """Each layer: its share of the busy samples and that share of ``us_per_order``."""
        return [[name, f"{n / self.total:.0%}", f"{n / self.total * us_per_order:.1f}"]
                for name, n in self.layers.most_common()]

    def leaf_rows(self, us_per_order: float, top: int) -> list[list[str]]:
        """The ``top`` leaf functions (self time), as the layers."""
        return [[f"`{name}`", f"{n / self.total:.1%}", f"{n / self.total * us_per_order:.1f}"]
                for name, n in self.leaves.most_common(top)]


def summarize(raw: Path, us_per_order: float, top: int) -> str:
    """Busy samples by layer and by leaf function, as shares of the measured CPU µs per order:
    py-spy counts a thread starved of CPU as busy, so its sample counts are wall-clock, and only
    their proportions are used."""
    samples = Samples.read(raw)
    out = [f"{samples.total} busy samples; {us_per_order:.0f} CPU µs per order measured", ""]
    for header, rows in ((LAYER_HEADER, samples.layer_rows(us_per_order)),
                         (LEAF_HEADER, samples.leaf_rows(us_per_order, top))):
        out += [f"| {' | '.join(header)} |", "| --- | ---: | ---: |",
                *(f"| {' | '.join(row)} |" for row in rows), ""]
    return "\n".join(out).rstrip()


def profiled_drain(stack: ScratchStack, topic: str, orders: int, run: int, raw: Path | None,
                   workers: int) -> dict[str, float]:
    """Drain the topic with ``workers`` new worker processes in one new consumer group; py-spy the
    first into ``raw`` if given; return the rate and CPU per order."""
    database_url = stack.new_database("profile")
    env = pipeline_env(stack, database_url, topic, f"profile{run}")
    processes = group_of_workers(stack, env, workers, f"profile-worker-{run}")
    groups = {"postgres": stack.postgres_process(), "kafka": stack.kafka_process()}
    spy = None
    try:
        for n, worker in enumerate(processes, start=1):
            groups[f"worker{n}"] = psutil.Process(worker.start(ready_timeout=None).pid)
        if raw is not None:  # from the first commit on, as the rates: start-up is not per order
            wait_for_orders(database_url, 1, processes[0], timeout=max(600.0, orders / 100), interval=0.05)
            with raw.with_suffix(".log").open("w") as output:
                spy = subprocess.Popen([str(PY_SPY), "record", "--format", "raw", "--rate",
                                        str(SAMPLES_PER_SECOND), "--pid", str(processes[0].pid),
                                        "-o", str(raw)], stdout=output, stderr=subprocess.STDOUT)
        with CpuMonitor(groups) as monitor:
            wait_for_orders(database_url, orders, processes[0], timeout=max(600.0, orders / 100))
    finally:
        for worker in processes:
            worker.stop()
        if spy is not None:
            spy.wait(timeout=60)
    timeline = commit_timeline(database_url)
    rate = timeline.rates()[0]
    cpu = monitor.cpu_between(timeline.first, timeline.last)
    worker_cpu = sum(cpu[f"worker{n}"] for n in range(1, workers + 1))
    stored = rate * timeline.window
    return {"orders_per_s": rate, "worker_us": worker_cpu / stored * 1e6,
            "postgres_us": cpu["postgres"] / stored * 1e6, "kafka_us": cpu["kafka"] / stored * 1e6,
            "total_us": (worker_cpu + cpu["postgres"] + cpu["kafka"]) / stored * 1e6,
            "worker_cores": worker_cpu / timeline.window}


def worker_profile(stack: ScratchStack, topic: str, orders: int, run: int) -> Samples:
    """One worker drains the topic while py-spy samples it: its busy samples. RuntimeError if
    py-spy is missing or records nothing (it needs to ptrace the worker)."""
    if not PY_SPY.exists():
        raise RuntimeError(f"no py-spy at {PY_SPY} (it comes with the dev extras: make setup)")
    raw = stack.home / "logs" / f"profile-worker-{run}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    profiled_drain(stack, topic, orders, run, raw, workers=1)
    samples = Samples.read(raw) if raw.exists() else Samples()
    if not samples.total:
        spy_log = raw.with_suffix(".log")
        said = spy_log.read_text().strip()[-300:] if spy_log.exists() else "no output"
        raise RuntimeError(f"py-spy recorded no sample of the worker ({said})")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=1, help="drains; py-spy samples the first")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top", type=int, default=25, help="leaf functions listed")
    parser.add_argument("--no-spy", action="store_true", help="measure CPU only")
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the group")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the preloaded topic")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    os.environ["TOPIC_PARTITIONS"] = str(args.partitions)
    raw = WORK_DIR / f"profile-{os.getpid()}.txt"
    runs = []
    with scratch_stack(WORK_DIR, commit_timestamps=True) as stack:
        topic = preload(stack, args.orders, args.seed)
        for number in range(1, args.runs + 1):
            spied = raw if number == 1 and not args.no_spy else None
            runs.append(profiled_drain(stack, topic, args.orders, number, spied, args.workers))
            log.info("run %d: %s; load average %s", number, run_line(runs[-1]), load_average())
    print(run_summary(runs))
    if not args.no_spy:
        print(summarize(raw, runs[0]["worker_us"], args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
