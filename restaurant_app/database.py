"""The one database access layer: a psycopg 3 connection pool and every SQL statement."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from restaurant_app import database_reports as reports_sql
from restaurant_app.models import Order

log = logging.getLogger(__name__)

# Any number will do as long as every worker uses the same one.
MIGRATION_LOCK_ID = 7_140_815

UNAVAILABLE_ERRORS = (psycopg.OperationalError, PoolTimeout)
CONNECT_TIMEOUT_SECONDS = 5.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached; the caller should wait and try again."""


@dataclass(frozen=True)
class Rejection:
    """A message that could not be accepted as an order, and where it came from."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    reason: str
    key: bytes | None = None


# A batch is streamed with COPY into session-local staging tables, then moved with one
# INSERT ... SELECT per table. COPY encodes rows in C; binding each column as an array
# parameter did it in Python, at about three times the worker's CPU per order.
# Each pooled connection creates the tables once, when the pool opens it.
STAGING_TABLES = """
CREATE TEMP TABLE staged_orders (
    order_id uuid, created_at timestamptz, customer_id bigint, customer_name text,
    channel text, payment_method text, total numeric
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE staged_order_items (
    order_id uuid, line_no smallint, dish text, category text, unit_price numeric, quantity integer
) ON COMMIT DELETE ROWS
"""

COPY_ORDERS = "COPY staged_orders FROM STDIN"
COPY_ITEMS = "COPY staged_order_items FROM STDIN"

INSERT_ORDERS = """
INSERT INTO orders (order_id, created_at, customer_id, customer_name,
                    channel, payment_method, total)
SELECT order_id, created_at, customer_id, customer_name, channel, payment_method, total
FROM staged_orders
ON CONFLICT (order_id) DO NOTHING
"""

INSERT_ITEMS = """
INSERT INTO order_items (order_id, line_no, dish, category, unit_price, quantity)
SELECT order_id, line_no, dish, category, unit_price, quantity FROM staged_order_items
ON CONFLICT (order_id, line_no) DO NOTHING
"""

INSERT_REJECTIONS = """
INSERT INTO rejected_orders (topic, kafka_partition, kafka_offset, raw, reason)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::bytea[], %s::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
"""


def describe(url: str) -> str:
    """Name a database for logs without its password: ``host:port/dbname``."""
    params = conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


async def until_available(operation: Callable[[], Awaitable[T]], doing: str) -> T:
    """Run ``operation``, waiting out a database outage with growing pauses between tries."""
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            return await operation()
        except DatabaseUnavailable as exc:
            log.warning(
                "PostgreSQL is unavailable while %s (%s); trying again in %.1f s.",
                doing, exc, delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)


def migration_files() -> list[tuple[str, str]]:
    """The versioned schema migrations, as (version, SQL) in the order they apply."""
    folder = resources.files("restaurant_app") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def _order_rows(orders: Sequence[Order]) -> Iterator[tuple[Any, ...]]:
    for o in orders:
        yield (o.order_id, o.created_at, o.customer_id, o.customer_name,
               o.channel, o.payment_method, o.total)


def _item_rows(orders: Sequence[Order]) -> Iterator[tuple[Any, ...]]:
    for order in orders:
        for line_no, item in enumerate(order.items, start=1):
            yield (order.order_id, line_no, item.dish, item.category, item.unit_price, item.quantity)


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    return DatabaseUnavailable(str(exc).strip() or type(exc).__name__)


async def _create_staging_tables(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(STAGING_TABLES)
    await conn.commit()


async def _copy(conn: psycopg.AsyncConnection, statement: str, rows: Iterator[tuple[Any, ...]]) -> None:
    async with conn.cursor().copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


def _rejection_columns(rejections: Sequence[Rejection]) -> list[list[Any]]:
    return [
        [r.topic for r in rejections],
        [r.partition for r in rejections],
        [r.offset for r in rejections],
        [r.raw for r in rejections],
        [r.reason for r in rejections],
    ]


class Database:
    """A pool of connections to PostgreSQL and the statements the pipeline runs."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self._ready = asyncio.Event()
        self._readying = asyncio.Lock()
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=AsyncConnectionPool.check_connection,
            configure=_create_staging_tables,
            timeout=CONNECT_TIMEOUT_SECONDS,
            reconnect_timeout=0,
        )

    async def ready(self) -> None:
        """Apply pending migrations and open the pool, waiting for PostgreSQL if it is down."""
        async with self._readying:
            if self._ready.is_set():
                return
            applied = await until_available(self.migrate, f"preparing {describe(self.url)}")
            if applied:
                log.info("Applied database migrations: %s", ", ".join(applied))
            await self.pool.open(wait=False)
            self._ready.set()

    async def close(self) -> None:
        await self.pool.close()

    async def _connect(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> psycopg.AsyncConnection:
        """A connection of its own, outside the pool."""
        try:
            return await psycopg.AsyncConnection.connect(self.url, connect_timeout=timeout)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded in ``schema_migrations``."""
        try:
            return await self._migrate()
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc

    async def _migrate(self) -> list[str]:
        applied: list[str] = []
        async with await self._connect() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for version, sql in migration_files():
                if version in done:
                    continue
                await conn.execute(sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                )
                applied.append(version)
        return applied

    async def save(
        self, orders: Sequence[Order], rejections: Sequence[Rejection] = ()
    ) -> int:
        """Store orders and rejections in one transaction; return how many orders were new.

        Orders already stored (same ``order_id``) and rejections already recorded
        (same topic, partition and offset) are left as they are, so a batch can be
        saved again after a redelivery without making a second row.
        """
        try:
            async with self.pool.connection() as conn, conn.transaction():
                inserted = 0
                if orders:
                    await _copy(conn, COPY_ORDERS, _order_rows(orders))
                    await _copy(conn, COPY_ITEMS, _item_rows(orders))
                    cursor = await conn.execute(INSERT_ORDERS)
                    inserted = cursor.rowcount
                    await conn.execute(INSERT_ITEMS)
                if rejections:
                    await conn.execute(INSERT_REJECTIONS, _rejection_columns(rejections))
                return inserted
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def ping(self) -> None:
        """Open a fresh connection and run a trivial query; raise ``DatabaseUnavailable`` if that fails."""
        try:
            async with await self._connect(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc

    async def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[dict]:
        """Run a read-only query and return its rows as dictionaries."""
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, params)
                return await cursor.fetchall()
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def latest_reports(self) -> dict[str, Any]:
        """The newest minute, hour and day reports with their dish rankings, the latest insights
        and the last run of the report job."""
        latest: dict[str, Any] = {}
        for granularity in reports_sql.GRANULARITIES:
            rows = await self.fetch_all(reports_sql.LATEST_SALES, (granularity,))
            if rows:
                rows[0]["dishes"] = await self.fetch_all(
                    reports_sql.DISHES_OF_WINDOW, (granularity, rows[0]["period_start"])
                )
            latest[granularity] = rows[0] if rows else None
        latest["insights"] = await self.fetch_all(reports_sql.LATEST_INSIGHTS)
        runs = await self.fetch_all(reports_sql.LAST_RUN)
        latest["last_run"] = runs[0] if runs else None
        return latest

    async def reports_between(
        self, granularity: str, start: datetime, end: datetime
    ) -> dict[str, list[dict]]:
        """The ``granularity`` reports and every insight whose window starts in [start, end)."""
        return {
            "reports": await self.fetch_all(reports_sql.SALES_BETWEEN, (granularity, start, end)),
            "insights": await self.fetch_all(reports_sql.INSIGHTS_BETWEEN, (start, end)),
        }

    async def record_report_failure(self, started_at: datetime, reason: str) -> None:
        """Record that a report job failed without saying so itself (killed, or crashed early).

        A run it left 'running' is marked failed; if there is none, a failed run is added.
        It waits a few seconds for the report lock, which a killed job's connection holds
        until PostgreSQL notices it is gone, and gives up if another job is still running.
        """
        try:
            async with await self._connect() as conn, conn.transaction():
                await conn.execute(reports_sql.WAIT_FOR_LOCK_AT_MOST)
                await conn.execute(reports_sql.LOCK_FOR_TRANSACTION, (reports_sql.REPORT_LOCK_ID,))
                cursor = await conn.execute(reports_sql.ABANDON_RUNS, (reason,))
                if cursor.rowcount == 0:
                    await conn.execute(reports_sql.RECORD_FAILURE, (started_at, reason))
        except psycopg.errors.LockNotAvailable:
            log.warning("Another report job is running; the failure of the last one is not recorded.")
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc
