"""``python -m bench.quix_peer --python QUIX_PYTHON``: the Quix Streams peer, drained like the worker.

Issue #12 compares the worker with Quix Streams 3.28 and its stock ``PostgreSQLSink``
(confluent-kafka underneath, 5 s checkpoints, ``ON CONFLICT DO NOTHING``) storing the same rows
(``bench/quix_peer_app.py``). Quix is not a dependency of this project; give it a virtualenv:

    python -m venv /tmp/quix && /tmp/quix/bin/pip install "quixstreams[postgresql]==3.28.1"
    python -m bench.quix_peer --python /tmp/quix/bin/python

As ``bench.ingest`` does: a scratch Kafka and PostgreSQL under bench/.work/, one topic preloaded
by ``produce-orders`` (seed 42, 6 partitions), a new consumer group and database each run. The
rate counts the orders committed after the first orders commit, over the time from it to the last
commit of any row: the lines' sink commits apart from the orders'.
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

log = logging.getLogger("bench")

WORK_DIR = Path(__file__).resolve().parent / ".work"
APP = Path(__file__).resolve().parent / "quix_peer_app.py"
SETTLED_SECONDS = 8
"""Seconds with no new order line after which the lines' sink is taken to be done (its
checkpoints come every 5 s)."""

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


def peer_env(stack: ScratchStack, database_url: str, topic: str) -> dict[str, str]:
    login = conninfo_to_dict(database_url)
    return {**os.environ, "BROKER": stack.bootstrap_servers, "GROUP": f"quix-{uuid.uuid4().hex[:8]}",
            "TOPIC": topic, "PGPORT": str(login["port"]), "PGDATABASE": str(login["dbname"]),
            "PGUSER": str(login["user"]), "PGPASSWORD": str(login["password"])}


def wait_until_stored(conn: psycopg.Connection, orders: int, peer: subprocess.Popen, log_file: Path) -> int:
    """Wait for every order, then for the lines to stop coming; return how many lines there are."""
    deadline = time.monotonic() + max(600.0, orders / 100)
    lines, unchanged = -1, 0
    while unchanged < SETTLED_SECONDS:
        if peer.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the peer exited or took too long; its output is in {log_file}")
        stored = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        now_lines = conn.execute("SELECT count(*) FROM order_items").fetchone()[0]
        unchanged = unchanged + 1 if stored == orders and now_lines == lines else 0
        lines = now_lines
        time.sleep(1.0)
    return lines


def drain_with_peer(stack: ScratchStack, quix_python: str, topic: str, orders: int, run: int
                    ) -> dict[str, float]:
    database_url = stack.new_database("quix")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    log_file = stack.home / "logs" / f"quix-peer-{run}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as output:
        peer = subprocess.Popen([quix_python, str(APP)], env=peer_env(stack, database_url, topic),
                                stdout=output, stderr=subprocess.STDOUT)
    groups = {"peer": psutil.Process(peer.pid), "postgres": stack.postgres_process()}
    try:
        with CpuMonitor(groups) as monitor, psycopg.connect(database_url, autocommit=True) as conn:
            lines = wait_until_stored(conn, orders, peer, log_file)
            first, last, later = conn.execute(SPAN).fetchone()
    finally:
        peer.terminate()
        peer.wait(30)
    window = last - first
    cpu = monitor.cpu_between(first, last)
    return {"orders_per_s": later / window, "lines": lines,
            "peer_us_per_order": cpu["peer"] / later * 1e6,
            "postgres_us_per_order": cpu["postgres"] / later * 1e6,
            "peer_cores": cpu["peer"] / window}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True, help="the Python of a virtualenv with quixstreams")
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    runs = []
    with scratch_stack(WORK_DIR, commit_timestamps=True) as stack:
        topic = preload(stack, args.orders, args.seed)
        for number in range(1, args.runs + 1):
            runs.append(drain_with_peer(stack, args.python, topic, args.orders, number))
            log.info("run %d: %s; load average %s", number, run_line(runs[-1]), load_average())
    print(run_summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
