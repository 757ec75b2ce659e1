"""How long the pipeline keeps what it stores, applied by the leader's hourly upkeep in bounded steps.

- Raw orders (``ORDERS_RETENTION_DAYS``): a UTC day's partitions of ``orders`` and ``order_items``
  are detached and dropped once the whole day is older than the retention (at most
  ``PARTITIONS_PER_STEP`` days an upkeep), then the orders' keys (``order_keys``) and the
  customers of daily reports (``report_customers``) of those days, in batches, and those of
  weeks and months a month after them (their counts stay).
- Rejected messages (``REJECTED_RETENTION_DAYS``): by ``rejected_at``, once in the dead-letter topic.
- Report runs (``REPORT_RUNS_RETENTION_DAYS``): finished ones before the last successful run,
  which the next run starts from.
- Minute and hour reports (``MINUTE_REPORTS_RETENTION_DAYS``, ``HOUR_REPORTS_RETENTION_DAYS``):
  their sales, dishes, customers and insights; daily reports are kept.

Rows go ``BATCH_ROWS`` at a time, each batch its own short transaction, at most ``BATCHES_PER_STEP``
batches per kind an upkeep: a backlog (retention turned on over a year of data) drains over
several hours without holding locks for long. 0 days keeps that kind of data for ever.

The dropping and deleting are migration 024's functions (``upkeep_drop_day``,
``upkeep_delete_old``), run as their owner ``restaurant_upkeep`` (migration 034): the worker's
role may call them, and they refuse a day or a cutoff younger than any retention allows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

from restaurant_app.partitions import PARTITION_NAMES, SET_LOCK_TIMEOUT, upkeep_transaction
from restaurant_app.settings import Settings

log = logging.getLogger(__name__)

BATCH_ROWS = 5_000
BATCHES_PER_STEP = 20
PARTITIONS_PER_STEP = 7
LOCK_TIMEOUT = "5s"
DAY_PARTITION = re.compile(r"^orders_p(\d{8})$")

# Migration 024's functions, which the worker's role may run without owning the tables.
DROP_DAY = "SELECT upkeep_drop_day(%s)"
DELETE_BATCH = "SELECT upkeep_delete_old(%s, %s, %s)"
"""One batch of one kind of rows (a name below, as the log says it), older than a cutoff."""

ORDERS_KINDS = ("order keys", "order events", "daily customers", "weekly and monthly customers")
"""What goes with the orders' days: their keys, their events (a cancellation or refund goes with
its order), and the customers of daily reports (and of weeks and months a month later)."""


def window_kinds(granularity: str) -> tuple[str, ...]:
    """The kinds of rows of reports of ``granularity`` (minute or hour): each report table's windows."""
    return (*(f"{granularity} {table}" for table in ("report_sales", "report_dishes", "report_customers")),
            f"{granularity} insights")


@dataclass
class Removed:
    """What one upkeep removed: the days of orders dropped, and rows of each kind deleted."""

    days: list[date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    more: list[str] = field(default_factory=list)
    """The kinds with more to remove than one step allows: the next upkeep goes on."""

    def describe(self) -> str:
        parts = []
        if self.days:
            parts.append(f"dropped the orders of {len(self.days)} day(s)"
                         f" ({self.days[0]:%Y-%m-%d} to {self.days[-1]:%Y-%m-%d})")
        parts += [f"deleted {count} {kind}" for kind, count in self.rows.items() if count]
        if not parts:
            return "Retention: nothing was old enough to remove."
        later = f"; more of {', '.join(self.more)} next hour" if self.more else ""
        return f"Retention: {'; '.join(parts)}{later}."


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """The oldest moment each kind of row is kept from (kinds kept for ever are left out)."""
    def before(days: int) -> datetime:
        return now - timedelta(days=days)

    kept = {}
    if settings.orders_retention_days:
        day = before(settings.orders_retention_days).astimezone(UTC).date()
        kept["orders"] = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for kind, days in (("rejected", settings.rejected_retention_days),
                       ("runs", settings.report_runs_retention_days),
                       ("minute", settings.minute_reports_retention_days),
                       ("hour", settings.hour_reports_retention_days)):
        if days:
            kept[kind] = before(days)
    return kept


def deletes_due(kept: dict[str, datetime]) -> list[tuple[str, datetime]]:
    """(kind, cutoff) for every kind of row a retention applies to."""
    by_setting = {"orders": ORDERS_KINDS, "rejected": ("rejected messages",), "runs": ("report runs",),
                  "minute": window_kinds("minute"), "hour": window_kinds("hour")}
    return [(kind, cutoff) for setting, cutoff in kept.items() for kind in by_setting[setting]]


async def apply_retention(conn: psycopg.AsyncConnection, settings: Settings,
                          now: datetime | None = None, batch_rows: int = BATCH_ROWS) -> Removed:
    """One bounded step of every retention; the next upkeep goes on where this one stopped.

    Raises ``psycopg.errors.LockNotAvailable`` if the orders stay busy for ``LOCK_TIMEOUT``.
    """
    kept = cutoffs(settings, now or datetime.now(UTC))
    removed = Removed()
    if "orders" in kept:
        removed.days = await drop_old_days(conn, kept["orders"].date())
    for kind, cutoff in deletes_due(kept):
        count, more = await delete_in_batches(conn, kind, cutoff, batch_rows)
        removed.rows[kind] = count
        if more:
            removed.more.append(kind)
    return removed


async def drop_old_days(conn: psycopg.AsyncConnection, first_kept: date) -> list[date]:
    """Detach and drop the day partitions of orders and order_items before ``first_kept``, the
    oldest ``PARTITIONS_PER_STEP`` of them, in the partition upkeep's transaction and lock."""
    async with upkeep_transaction(conn):
        names = [row[0] for row in await (await conn.execute(PARTITION_NAMES)).fetchall()]
        days = sorted(datetime.strptime(m[1], "%Y%m%d").date()
                      for m in map(DAY_PARTITION.match, names) if m)
        old = [day for day in days if day < first_kept][:PARTITIONS_PER_STEP]
        if not old:
            return []
        await conn.execute(SET_LOCK_TIMEOUT, (LOCK_TIMEOUT,))
        for day in old:
            await conn.execute(DROP_DAY, (day,))
    return old


async def delete_in_batches(conn: psycopg.AsyncConnection, kind: str, cutoff: datetime,
                            batch_rows: int) -> tuple[int, bool]:
    """Delete ``kind``'s old rows batch after batch, each its own transaction, until a batch
    deletes fewer than ``batch_rows`` or ``BATCHES_PER_STEP`` have run; return the rows deleted
    and whether there may be more."""
    deleted = 0
    for _ in range(BATCHES_PER_STEP):
        async with conn.transaction():
            count = (await (await conn.execute(DELETE_BATCH, (kind, cutoff, batch_rows))).fetchone())[0]
        deleted += count
        if count < batch_rows:
            return deleted, False
    return deleted, True
