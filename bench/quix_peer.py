"""``python -m bench.quix_peer``: the Quix Streams peer, drained like the worker.

Issues #12 and #26 compare the worker with Quix Streams 3.28 and its stock ``PostgreSQLSink``
(confluent-kafka underneath, ``ON CONFLICT DO NOTHING``) storing the same rows into tables that
exist (``bench/quix_peer_app.py``), like for like: one Quix process against one worker, two (one
consumer group) against two, each storing batches of the worker's size (a checkpoint every
``BATCH_MAX_ORDERS`` messages, or after ``COMMIT_INTERVAL``). ``python -m bench --only ingest``
measures the peer in the same run as the worker; this command measures the peer alone. Quix is
not a dependency of this project: it runs in a virtualenv of its own, which ``quix_python``
creates in .stack/quix the first time (``pip install quixstreams[postgresql]==3.28.1``), or give
one with ``--python``.

As ``bench.ingest`` does: a scratch Kafka and PostgreSQL under bench/.work/, one topic preloaded
by ``produce-orders`` (seed 42, 6 partitions, 50 stores), a new consumer group and database each
run. The rate counts the orders committed after the first orders commit, over the time from it
to the last commit of any row: the lines' sink commits apart from the orders'.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.ingest import preload
from bench.monitor import CpuMonitor
from bench.results import load_average, run_line, run_summary
from infra.scratch import ScratchStack, scratch_stack
from restaurant_app.settings import PROJECT_ROOT, Settings

log = logging.getLogger("bench")

WORK_DIR = Path(__file__).resolve().parent / ".work"
APP = Path(__file__).resolve().parent / "quix_peer_app.py"
QUIX_REQUIREMENT = "quixstreams[postgresql]==3.28.1"
QUIX_VENV = PROJECT_ROOT / ".stack" / "quix"
"""Beside the fetched jars, not under bench/.work/, which each bench run empties."""
COMMIT_INTERVAL = 1.0
"""Seconds at most between the peer's checkpoints (Quix's default: 5). With ``commit_every`` at
the worker's ``BATCH_MAX_ORDERS`` (5,000), the peer stores the batches the worker stores at full
speed, and its last, partial one within a second, not five, of reading it."""
SETTLED_SECONDS = 5
"""Seconds with no new order line after which the lines' sink is taken to be done (its
checkpoints come at least every ``COMMIT_INTERVAL``)."""

TABLES = """
CREATE TABLE orders (
    order_id uuid PRIMARY KEY, created_at timestamptz NOT NULL, customer_id bigint NOT NULL,
    customer_name text NOT NULL, channel text NOT NULL, payment_method text NOT NULL,
    total numeric(12,2) NOT NULL);
CREATE TABLE order_items (
    order_id uuid NOT NULL, line_no smallint NOT NULL, dish text NOT NULL, category text NOT NULL,
    unit_price numeric(10,2) NOT NULL, quantity integer NOT NULL, PRIMARY KEY (order_id, line_no));
"""

SPAN = """
WITH o AS (SELECT pg_xact_commit_timestamp(xmin) AS t FROM orders),
     i AS (SELECT pg_xact_commit_timestamp(xmin) AS t FROM order_items)
SELECT extract(epoch FROM (SELECT min(t) FROM o))::float8,
       extract(epoch FROM greatest((SELECT max(t) FROM o), (SELECT max(t) FROM i)))::float8,
       (SELECT count(*) FROM o WHERE t > (SELECT min(t) FROM o))
"""


def quix_python(given: str | None = None) -> str:
    """The Python that runs the peer: ``given``, else .stack/quix's, made on first use."""
    if given:
        return given
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        log.info("Installing %s into %s for the peer (once) ...", QUIX_REQUIREMENT, QUIX_VENV)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT], check=True)
    return str(python)


def peer_env(stack: ScratchStack, database_url: str, topic: str, group: str) -> dict[str, str]:
    """What bench/quix_peer_app.py reads: where to read and store, and how often to commit."""
    login = conninfo_to_dict(database_url)
    return {**os.environ, "BROKER": stack.bootstrap_servers, "GROUP": group,
            "TOPIC": topic, "PGPORT": str(login["port"]), "PGDATABASE": str(login["dbname"]),
            "PGUSER": str(login["user"]), "PGPASSWORD": str(login["password"]),
            "COMMIT_EVERY": str(Settings.from_env().batch_max_orders),
            "COMMIT_INTERVAL": str(COMMIT_INTERVAL)}


def wait_until_stored(conn: psycopg.Connection, orders: int, peers: list[subprocess.Popen],
                      log_files: list[Path]) -> int:
    """Wait for every order, then for the lines to stop coming; return how many lines there are."""
    deadline = time.monotonic() + max(600.0, orders / 100)
    lines, unchanged = -1, 0
    while unchanged < SETTLED_SECONDS:
        if any(peer.poll() is not None for peer in peers) or time.monotonic() > deadline:
            raise RuntimeError(f"the peer exited or took too long; its output is in {log_files}")
        stored = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        now_lines = conn.execute("SELECT count(*) FROM order_items").fetchone()[0]
        unchanged = unchanged + 1 if stored == orders and now_lines == lines else 0
        lines = now_lines
        time.sleep(1.0)
    return lines


def drain_with_peer(stack: ScratchStack, python: str, topic: str, orders: int, run: int,
                    processes: int = 1) -> dict[str, float]:
    """``processes`` Quix processes in one new consumer group store the topic in a new database;
    their rate and the CPU per stored order of the peer, PostgreSQL and the broker."""
    database_url = stack.new_database("quix")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    env = peer_env(stack, database_url, topic, f"quix-{uuid.uuid4().hex[:8]}")
    log_files = [stack.home / "logs" / f"quix-peer-{run}-{n}-of-{processes}.log"
                 for n in range(1, processes + 1)]
    log_files[0].parent.mkdir(parents=True, exist_ok=True)
    peers = []
    for log_file in log_files:
        with log_file.open("w") as output:  # each its own state folder: Quix makes it at start
            peers.append(subprocess.Popen([python, str(APP)], stdout=output, stderr=subprocess.STDOUT,
                                          env={**env, "STATE_DIR": str(log_file.with_suffix(".state"))}))
    groups = {"postgres": stack.postgres_process(), "kafka": stack.kafka_process(),
              **{f"peer{n}": psutil.Process(peer.pid) for n, peer in enumerate(peers, start=1)}}
    try:
        with CpuMonitor(groups) as monitor, psycopg.connect(database_url, autocommit=True) as conn:
            lines = wait_until_stored(conn, orders, peers, log_files)
            first, last, later = conn.execute(SPAN).fetchone()
    finally:
        for peer in peers:
            peer.terminate()
        for peer in peers:
            peer.wait(30)
    window = last - first
    cpu = monitor.cpu_between(first, last)
    peer_cpu = sum(cpu[f"peer{n}"] for n in range(1, processes + 1))
    figures = {"orders_per_s": later / window, "lines": lines,
               "peer_us_per_order": peer_cpu / later * 1e6,
               "postgres_us_per_order": cpu["postgres"] / later * 1e6,
               "kafka_us_per_order": cpu["kafka"] / later * 1e6,
               "peer_cores": peer_cpu / window}
    figures["total_us_per_order"] = sum(figures[f"{part}_us_per_order"]
                                        for part in ("peer", "postgres", "kafka"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="the Python of a virtualenv with quixstreams (else"
                                         f" {QUIX_VENV}/bin/python, made on first use)")
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="Quix processes in the group (1)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    python = quix_python(args.python)
    runs = []
    with scratch_stack(WORK_DIR, commit_timestamps=True) as stack:
        topic = preload(stack, args.orders, args.seed)
        for number in range(1, args.runs + 1):
            runs.append(drain_with_peer(stack, python, topic, args.orders, number, args.processes))
            log.info("run %d: %s; load average %s", number, run_line(runs[-1]), load_average())
    print(run_summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
