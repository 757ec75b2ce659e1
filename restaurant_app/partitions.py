"""The day partitions of ``orders`` and ``order_items`` (migration 006): days ahead, and the default's rows.

Both tables are partitioned by the UTC day of the order's ``created_at`` (``order_items`` by its
copy, ``order_created_at``), one partition per day, named ``orders_p20261129`` and
``order_items_p20261129``; an order whose day has no partition lands in ``orders_default``
(and its lines in ``order_items_default``), so no timestamp ever fails an insert.

``keep_partitions`` creates the partitions of yesterday to ``DAYS_AHEAD`` days ahead, and of
every day that has rows in the default partitions, moving those rows into their new day. The
worker runs it at start-up and every hour (``agents/partitions.py``), the leader's hourly run
followed by the retentions (``restaurant_app/retention.py``); ``python -m restaurant_app.partitions``
runs both once against ``DATABASE_URL``. Creating and moving is migration 024's function
``upkeep_add_day``, which runs as the tables' owner (migration 034's ``restaurant_upkeep``): the
worker's role needs no more than the right to call it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta

import psycopg

from restaurant_app.logs import configure_logging
from restaurant_app.settings import settings_or_exit

log = logging.getLogger(__name__)

TABLES = (("orders", "created_at"), ("order_items", "order_created_at"))
"""Each partitioned table and its partition column."""
DAYS_BEHIND = 1
DAYS_AHEAD = 7
DAYS_PER_TRANSACTION = 16
"""Most days the upkeep creates in one transaction: each holds about a dozen locks until it commits."""
# Any number will do as long as every worker uses the same one.
PARTITIONS_LOCK_ID = 7_140_817
LOCK_TIMEOUT = "5s"
"""How long to wait for the tables' locks before giving up until the next try."""

TAKE_LOCK = "SELECT pg_advisory_xact_lock(%s)"
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"

PARTITION_NAMES = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('orders'::regclass, 'order_items'::regclass)
"""

# Migration 024's functions, which the worker's role may run without owning the tables. The
# second locks the tables (inserts wait while rows move and partitions appear; reads go on until
# a partition is created), creates the day's missing partitions and moves its default rows in.
DEFAULT_DAYS = "SELECT upkeep_default_days()"
ADD_DAY = "SELECT upkeep_add_day(%s)"


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day ``day`` as [start, end)."""
    start = datetime.combine(day, time(), UTC)
    return start, start + timedelta(days=1)


def days_around(today: date) -> set[date]:
    """The days whose partitions should always exist: yesterday (late orders) to ``DAYS_AHEAD`` ahead."""
    return {today + timedelta(days=n) for n in range(-DAYS_BEHIND, DAYS_AHEAD + 1)}


async def keep_partitions(conn: psycopg.AsyncConnection, today: date | None = None) -> tuple[list[date], int]:
    """Create the partitions of the days around ``today`` (UTC) and of the days with rows in the
    default partition, at most ``DAYS_PER_TRANSACTION`` days per transaction (each day takes
    locks until its transaction ends); return the days created and how many orders moved into them."""
    today = today or datetime.now(UTC).date()
    created: list[date] = []
    moved = 0
    while True:
        async with upkeep_transaction(conn):
            cursor = await conn.execute(DEFAULT_DAYS)
            days = days_around(today) | {row[0] for row in await cursor.fetchall()}
            added, count = await _add_partitions(conn, days, DAYS_PER_TRANSACTION)
        created += added
        moved += count
        if len(added) < DAYS_PER_TRANSACTION:
            return created, moved


async def add_partitions(conn: psycopg.AsyncConnection, days: Iterable[date]) -> tuple[list[date], int]:
    """Create the missing partitions of ``days``, moving their rows out of the default partitions,
    in one transaction; return the days created and how many orders moved.

    Raises ``psycopg.errors.LockNotAvailable`` if the tables stay busy for ``LOCK_TIMEOUT``.
    """
    async with upkeep_transaction(conn):
        return await _add_partitions(conn, set(days))


@asynccontextmanager
async def upkeep_transaction(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """A transaction that takes the upkeep's lock before it reads any table: two workers' upkeeps
    then queue, where one holding a read lock on the default partition while it waited for the
    other, which needed that partition to create a day, deadlocked."""
    async with conn.transaction():
        await conn.execute(TAKE_LOCK, (PARTITIONS_LOCK_ID,))
        yield


async def _add_partitions(conn: psycopg.AsyncConnection, days: set[date],
                          most: int | None = None) -> tuple[list[date], int]:
    """Create the missing partitions of ``days`` (the first ``most`` of them, if given)."""
    existing = {row[0] for row in await (await conn.execute(PARTITION_NAMES)).fetchall()}
    missing = sorted(d for d in days if any(partition_name(table, d) not in existing for table, _ in TABLES))
    missing = missing[:most]
    if not missing:
        return [], 0
    await conn.execute(SET_LOCK_TIMEOUT, (LOCK_TIMEOUT,))
    moved = 0
    for day in missing:
        moved += (await (await conn.execute(ADD_DAY, (day,))).fetchone())[0]
    return missing, moved


async def _main() -> None:
    from restaurant_app.retention import apply_retention  # it builds on this module

    settings = settings_or_exit()
    configure_logging(settings)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        created, moved = await keep_partitions(conn)
        log.info("%s", describe_upkeep(created, moved))
        log.info("%s", (await apply_retention(conn, settings)).describe())


def describe_upkeep(created: list[date], moved: int) -> str:
    """What an upkeep did, in one line for the log."""
    if not created:
        return "Every day partition of orders and order_items was already there."
    days = ", ".join(f"{day:%Y-%m-%d}" for day in created)
    return (f"Created the day partitions of orders and order_items for {days};"
            f" moved {moved} order(s) into them from the default partition.")


if __name__ == "__main__":
    asyncio.run(_main())
