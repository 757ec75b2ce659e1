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
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from restaurant_app.partitions import PARTITION_NAMES, TABLES, partition_name, upkeep_transaction
from restaurant_app.settings import Settings

log = logging.getLogger(__name__)

BATCH_ROWS = 5_000
BATCHES_PER_STEP = 20
PARTITIONS_PER_STEP = 7
LOCK_TIMEOUT = "5s"
DAY_PARTITION = re.compile(r"^orders_p(\d{8})$")

DETACH = sql.SQL("ALTER TABLE {table} DETACH PARTITION {partition}")
DROP = sql.SQL("DROP TABLE {partition}")

# Each kind of row a retention applies to: a name for the log, and one batch's DELETE, whose
# %(cutoff)s is the oldest moment kept and %(batch)s the most rows it deletes.
BATCHED_DELETES = {
    "order keys": sql.SQL("""
        DELETE FROM order_keys WHERE order_id IN (
            SELECT order_id FROM order_keys WHERE created_at < %(cutoff)s LIMIT %(batch)s)"""),
    # A cancellation or refund goes with its order.
    "order events": sql.SQL("""
        DELETE FROM order_events WHERE event_id IN (
            SELECT event_id FROM order_events WHERE order_created_at < %(cutoff)s LIMIT %(batch)s)"""),
    "daily customers": sql.SQL("""
        DELETE FROM report_customers WHERE ctid IN (
            SELECT ctid FROM report_customers
            WHERE granularity = 'day' AND period_start < %(cutoff)s LIMIT %(batch)s)"""),
    # A week's or month's customers are kept while its orders may still come (their count stays).
    "weekly and monthly customers": sql.SQL("""
        DELETE FROM report_customers WHERE ctid IN (
            SELECT ctid FROM report_customers
            WHERE granularity IN ('week', 'month') AND period_start < %(cutoff)s - interval '31 days'
            LIMIT %(batch)s)"""),
    "rejected messages": sql.SQL("""
        DELETE FROM rejected_orders WHERE id IN (
            SELECT id FROM rejected_orders
            WHERE rejected_at < %(cutoff)s AND dead_lettered_at IS NOT NULL LIMIT %(batch)s)"""),
    "report runs": sql.SQL("""
        DELETE FROM report_runs WHERE run_id IN (
            SELECT run_id FROM report_runs
            WHERE finished_at < %(cutoff)s AND status <> 'running'
              AND run_id < (SELECT coalesce(max(run_id), 0) FROM report_runs WHERE status = 'succeeded')
            LIMIT %(batch)s)"""),
}
WINDOWS = sql.SQL("""
    DELETE FROM {table} WHERE ctid IN (
        SELECT ctid FROM {table} WHERE granularity = {granularity} AND period_start < %(cutoff)s
        LIMIT %(batch)s)""")
INSIGHTS = sql.SQL("""
    DELETE FROM report_insights WHERE ctid IN (
        SELECT ctid FROM report_insights
        WHERE window_end - window_start <= {length}::interval AND window_start < %(cutoff)s
        LIMIT %(batch)s)""")


def window_deletes(granularity: str, length: str) -> dict[str, sql.Composable]:
    """One batch's DELETE of each report table's windows of ``granularity`` (``length`` long)."""
    deletes: dict[str, sql.Composable] = {
        f"{granularity} {table}": WINDOWS.format(table=sql.Identifier(table),
                                                 granularity=sql.Literal(granularity))
        for table in ("report_sales", "report_dishes", "report_customers")
    }
    deletes[f"{granularity} insights"] = INSIGHTS.format(length=sql.Literal(length))
    return deletes


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


def deletes_due(kept: dict[str, datetime]) -> list[tuple[str, sql.Composable, datetime]]:
    """(kind, one batch's DELETE, cutoff) for every kind of row a retention applies to."""
    due = []
    by_setting = {"orders": {k: BATCHED_DELETES[k] for k in ("order keys", "order events", "daily customers",
                                                             "weekly and monthly customers")},
                  "rejected": {"rejected messages": BATCHED_DELETES["rejected messages"]},
                  "runs": {"report runs": BATCHED_DELETES["report runs"]},
                  "minute": window_deletes("minute", "1 minute"),
                  "hour": window_deletes("hour", "1 hour")}
    for setting, cutoff in kept.items():
        due += [(kind, statement, cutoff) for kind, statement in by_setting[setting].items()]
    return due


async def apply_retention(conn: psycopg.AsyncConnection, settings: Settings,
                          now: datetime | None = None, batch_rows: int = BATCH_ROWS) -> Removed:
    """One bounded step of every retention; the next upkeep goes on where this one stopped.

    Raises ``psycopg.errors.LockNotAvailable`` if the orders stay busy for ``LOCK_TIMEOUT``.
    """
    kept = cutoffs(settings, now or datetime.now(UTC))
    removed = Removed()
    if "orders" in kept:
        removed.days = await drop_old_days(conn, kept["orders"].date())
    for kind, statement, cutoff in deletes_due(kept):
        count, more = await delete_in_batches(conn, statement, cutoff, batch_rows)
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
        await conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        for day in old:
            for table, _ in TABLES:
                partition = {"table": sql.Identifier(table),
                             "partition": sql.Identifier(partition_name(table, day))}
                if partition_name(table, day) in names:
                    await conn.execute(DETACH.format(**partition))
                    await conn.execute(DROP.format(**partition))
    return old


async def delete_in_batches(conn: psycopg.AsyncConnection, statement: sql.Composable, cutoff: datetime,
                            batch_rows: int) -> tuple[int, bool]:
    """Run ``statement`` batch after batch, each its own transaction, until a batch deletes fewer
    than ``batch_rows`` or ``BATCHES_PER_STEP`` have run; return the rows deleted and whether
    there may be more."""
    deleted = 0
    for _ in range(BATCHES_PER_STEP):
        async with conn.transaction():
            count = (await conn.execute(statement, {"cutoff": cutoff, "batch": batch_rows})).rowcount
        deleted += count
        if count < batch_rows:
            return deleted, False
    return deleted, True
