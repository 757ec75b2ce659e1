"""The worker's PostgreSQL: a psycopg 3 connection pool, the schema migrations, outages as one error."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from restaurant_app.errors import PipelineError
from restaurant_app.retry import Backoff

log = logging.getLogger(__name__)

# Any number will do as long as every worker uses the same one.
MIGRATION_LOCK_ID = 7_140_815

UNAVAILABLE_ERRORS = (psycopg.OperationalError, PoolTimeout)
CONNECT_TIMEOUT_SECONDS = 5.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0
CHECK_AFTER_SECONDS = 1.0
"""A pooled connection is checked with a round trip before it is handed out only if it was last
handed out longer ago than this: a worker storing a batch every few milliseconds would otherwise
pay one more round trip per batch. A connection that broke in between fails its work as an outage
does: the caller waits it out and tries again, on another connection."""
IDLE_IN_TRANSACTION_SECONDS = 10
"""A worker's transactions never wait on anything outside PostgreSQL, so one idle this long is a
frozen or vanished worker: PostgreSQL ends it, and the row locks it held (keys of orders another
worker must store too) go with it. The worker, if it comes back, retries its batch."""

T = TypeVar("T")
ConnectionSetup = Callable[[psycopg.AsyncConnection], Awaitable[None]]


class DatabaseUnavailable(PipelineError):
    """PostgreSQL cannot be reached; the caller should wait and try again."""


@contextmanager
def outage_as_unavailable() -> Iterator[None]:
    """Turn an unreachable PostgreSQL (a connection error or a pool time-out) into ``DatabaseUnavailable``."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc


def describe(url: str) -> str:
    """Name a database for logs without its password: ``host:port/dbname``."""
    params = conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


async def until_available(operation: Callable[[], Awaitable[T]], doing: str,
                          held: Callable[[str, float], None] | None = None) -> T:
    """Run ``operation``, waiting out a database outage with growing pauses between tries.

    ``held``, if given, is told after each failed try what holds the work and since when.
    """
    backoff, since = Backoff(FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS), time.time()
    while True:
        try:
            return await operation()
        except DatabaseUnavailable as exc:
            log.warning(
                "PostgreSQL is unavailable while %s (%s); trying again in %.1f s.",
                doing, exc, backoff.delay,
            )
            if held is not None:
                held(f"PostgreSQL is unavailable while {doing}", since)
            await backoff.wait()


def migration_files() -> list[tuple[str, str]]:
    """The versioned schema migrations, as (version, SQL) in the order they apply."""
    folder = resources.files("restaurant_app") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def privileges() -> str:
    """The grants of the least-privileged roles (``privileges.sql``), made again after migrating."""
    return (resources.files("restaurant_app") / "privileges.sql").read_text()


class MigrationsRefused(PipelineError):
    """Migrations are pending and the role of the URL may not apply them."""


@contextmanager
def refused_as_migrations_refused(url: str, pending: list[str]) -> Iterator[None]:
    """A privilege refused while migrating, as ``MigrationsRefused`` saying what to do."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        user = conninfo_to_dict(url).get("user") or "this role"
        raise MigrationsRefused(
            f"{len(pending)} migration(s) are pending on {describe(url)} ({', '.join(pending)}), and"
            f" {user} may not apply them ({exc.diag.message_primary}): run `python -m restaurant_app.admin"
            " migrate` with the tables' owner in DATABASE_URL (make run does, before its workers),"
            " then start again.") from None


class Database:
    """A pool of connections to PostgreSQL, opened once the schema is up to date."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self._ready = asyncio.Event()
        self._readying = asyncio.Lock()
        self._setups: list[ConnectionSetup] = []
        self._handed_out = weakref.WeakKeyDictionary[psycopg.AsyncConnection, float]()
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=self._check,
            configure=self._configure,
            timeout=CONNECT_TIMEOUT_SECONDS,
            reconnect_timeout=0,
            kwargs={"options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS}s"},
        )

    def prepare_connections(self, setup: ConnectionSetup) -> None:
        """Run ``setup`` on every pooled connection when the pool opens it (before ``ready()``)."""
        self._setups.append(setup)

    async def _check(self, conn: psycopg.AsyncConnection) -> None:
        """Check a pooled connection about to be handed out, unless it was within ``CHECK_AFTER_SECONDS``."""
        now, last = time.monotonic(), self._handed_out.get(conn)
        if last is None or now - last >= CHECK_AFTER_SECONDS:
            await AsyncConnectionPool.check_connection(conn)
        self._handed_out[conn] = now

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        for setup in self._setups:
            await setup(conn)

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

    async def connect(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> psycopg.AsyncConnection:
        """A connection of its own, outside the pool."""
        with outage_as_unavailable():
            return await psycopg.AsyncConnection.connect(self.url, connect_timeout=timeout)

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded in ``schema_migrations``; return their versions."""
        applied: list[str] = []
        pending = await self.pending_migrations()
        if not pending:  # nothing to do: a role that may not migrate starts too
            return applied
        with outage_as_unavailable(), refused_as_migrations_refused(self.url, pending):
            async with await self.connect() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cursor = await conn.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cursor.fetchall()}
                for version, sql in migration_files():
                    if version not in done:
                        await conn.execute(sql.encode())
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                        applied.append(version)
                if applied:
                    await conn.execute(privileges().encode())
        return applied

    async def pending_migrations(self) -> list[str]:
        """The migrations ``migrate`` would apply, without applying them."""
        with outage_as_unavailable():
            async with await self.connect() as conn:
                cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
                done: set[str] = set()
                if (await cursor.fetchone())[0]:
                    cursor = await conn.execute("SELECT version FROM schema_migrations")
                    done = {row[0] for row in await cursor.fetchall()}
        return [version for version, _ in migration_files() if version not in done]

    async def fetch_all(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict]:
        """Run a read-only query on a pooled connection and return its rows as dictionaries."""
        with outage_as_unavailable():
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, params)
                return await cursor.fetchall()


class RoleDatabase(Database):
    """A pool logged in as a role that may not migrate (migration 023's): ready once ``owner``,
    the pool of ``DATABASE_URL``, has applied the migrations."""

    def __init__(self, url: str, owner: Database, *, max_size: int = 4) -> None:
        super().__init__(url, max_size=max_size)
        self.owner = owner

    async def migrate(self) -> list[str]:
        await self.owner.ready()
        return []
