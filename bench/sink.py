"""``python -m bench.sink``: what ``PostgresOrderSink.save`` costs per order, alone.

Starts a scratch PostgreSQL under bench/.work/ (no Kafka, no worker), generates ``--batches``
batches of ``--batch`` orders of a 50-store chain, checked by ``parse_order`` as the worker checks
them, and stores every batch through the real save path into a new database, ``--runs`` times.
Prints, for each run and then as min, median and max over the runs, three costs per order:

- the worker's CPU µs spent in ``save`` by this process (``time.process_time``);
- PostgreSQL's CPU µs: the user and system time of the sink's one pooled connection's backend
  (``pg_backend_pid()``, read by psutil; the scratch PostgreSQL is local), so neither the other
  server processes (checkpointer, WAL writer, autovacuum) nor this process are counted;
- the bytes of WAL written (``pg_current_wal_lsn()`` before and after the batches).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from bench.monitor import process_tree_cpu
from infra.postgres import PostgresServer
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.models import Order
from restaurant_app.order_sink import Accepted, PostgresOrderSink, Source
from restaurant_app.partitions import keep_partitions
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import parse_order

WORK_DIR = Path(__file__).resolve().parent / ".work" / "sink"
STORES = 50
WARM_UP_ORDERS = 200
"""Stored before the measured batches, so that the pool's connection and its staging tables exist."""

log = logging.getLogger("bench")

BACKEND = "SELECT pg_backend_pid(), pg_current_wal_lsn()"
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)"


@dataclass(frozen=True)
class Costs:
    """A run's costs per stored order."""

    worker_us: float
    postgres_us: float
    wal_bytes: float


def batches(count: int, size: int, seed: int, whole_bills: bool) -> list[list[Accepted]]:
    """``count`` batches of ``size`` generated orders, each parsed from its message as the worker does."""
    generator = OrderGenerator(seed, stores=STORES, whole_bills=whole_bills)
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    out = []
    for number in range(count):
        moment = start + timedelta(seconds=number)
        orders = [parse_order(generator.order(moment, f"loja-{n % STORES:02d}").dumps(), now=now)
                  for n in range(size)]
        out.append(accepted(orders, offset=number * size))
    return out


def accepted(orders: list[Order], offset: int = 0) -> list[Accepted]:
    return [Accepted(order, Source("orders", 0, offset + n, b"")) for n, order in enumerate(orders)]


async def store_all(database_url: str, work: list[list[Accepted]], warm_up: list[Accepted]) -> Costs:
    """Store ``warm_up``, then every batch of ``work``; what the batches' saves cost per order."""
    database = Database(database_url, max_size=1)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        async with await database.connect() as conn:
            await keep_partitions(conn)
        await sink.save(warm_up)
        async with database.pool.connection() as conn:  # the pool's one connection: the sink's backend
            pid, start_lsn = await (await conn.execute(BACKEND)).fetchone()
        backend = psutil.Process(pid)  # a backend starts no process: its tree is itself
        backend_start = process_tree_cpu(backend)
        cpu = 0.0
        for batch in work:
            before = time.process_time()
            saved = await sink.save(batch)
            cpu += time.process_time() - before
            assert saved.new_orders == len(batch), f"{saved.new_orders} of {len(batch)} stored"
        backend_cpu = process_tree_cpu(backend) - backend_start
        async with database.pool.connection() as conn:
            wal = (await (await conn.execute(WAL_SINCE, (start_lsn,))).fetchone())[0]
        orders = sum(len(batch) for batch in work)
        return Costs(cpu * 1e6 / orders, backend_cpu * 1e6 / orders, float(wal) / orders)
    finally:
        await database.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5_000, help="orders per batch")
    parser.add_argument("--runs", type=int, default=5, help="each into a new database")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--whole-bills", action="store_true", help="version 2 bills (payments, discounts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("restaurant_app").setLevel(logging.WARNING)  # each new database's migrations
    log.info("Generating %d batches of %d orders ...", args.batches, args.batch)
    work = batches(args.batches, args.batch, args.seed, args.whole_bills)
    warm_up = accepted([OrderGenerator(args.seed + 1).order() for _ in range(WARM_UP_ORDERS)])
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    postgres = PostgresServer(WORK_DIR / "postgres", free_port())
    postgres.start()
    results = []
    try:
        for run in range(1, args.runs + 1):
            postgres.create_database(f"sink_{run}")
            results.append(asyncio.run(store_all(postgres.url(f"sink_{run}"), work, warm_up)))
            costs = results[-1]
            log.info("run %d: per order, %.2f CPU µs in save, PostgreSQL %.1f CPU µs, %.0f bytes of WAL",
                     run, costs.worker_us, costs.postgres_us, costs.wal_bytes)
    finally:
        postgres.stop()
    print(f"save, per order over {args.runs} runs of {args.batches} x {args.batch:,} orders"
          f" ({'version 2' if args.whole_bills else 'version 1'}): min, median, max")
    for name, unit, values in (("worker CPU", "µs", [c.worker_us for c in results]),
                               ("PostgreSQL CPU", "µs", [c.postgres_us for c in results]),
                               ("WAL", "bytes", [c.wal_bytes for c in results])):
        print(f"  {name:<15} {min(values):8.2f} {statistics.median(values):8.2f} {max(values):8.2f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
