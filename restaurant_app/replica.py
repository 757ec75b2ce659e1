"""A read replica (``REPORTS_DATABASE_URL``): its pool, its lag, and waiting until it has caught up.

A hot-standby replica replays the primary's WAL: it has every transaction the primary committed
up to its replay position (LSN), and none after. Readers that must see a write they just made
on the primary (the report job's scope) wait until the replay position passes the primary's
WAL flush position, read after that write.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg

from restaurant_app.database import Database, DatabaseUnavailable, describe
from restaurant_app.errors import PipelineError

log = logging.getLogger(__name__)

WAIT_INTERVAL_SECONDS = 0.1
STATUS_TIMEOUT_SECONDS = 2.0

# Everything committed so far (synchronous commits are flushed before they return).
PRIMARY_POSITION = "SELECT pg_current_wal_flush_lsn()::text AS lsn"

# NULL on a server that is not replaying (a primary, or a promoted replica): nothing to wait for.
BYTES_BEHIND = "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint"

# The lag in seconds is the age of the last replayed commit while WAL is waiting to be replayed,
# and 0 once everything is replayed (when the primary is idle, that commit's age says nothing).
REPLICA_LAG = """
SELECT pg_is_in_recovery() AS in_recovery, greatest(d.behind, 0)::bigint AS bytes_behind,
       CASE WHEN d.behind > 0 THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
            WHEN d.behind IS NOT NULL THEN 0 END::float8 AS lag_seconds
FROM (SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()) AS behind) d
"""


class ReplicaBehind(PipelineError):
    """The replica did not replay the primary's WAL up to the wanted position in time."""


class ReplicaDatabase(Database):
    """A pool on a read replica: it applies no migrations, its schema comes from the primary."""

    async def migrate(self) -> list[str]:
        return []


def wait_until_replayed(primary: psycopg.Connection, replica_url: str, timeout: float) -> float:
    """Wait until the replica at ``replica_url`` has replayed everything ``primary`` committed so far;
    return the seconds waited. Raises ``ReplicaBehind`` after ``timeout`` seconds."""
    lsn = primary.execute(PRIMARY_POSITION).fetchone()[0]
    started = time.monotonic()
    with psycopg.connect(replica_url, autocommit=True, connect_timeout=10) as replica:
        while True:
            behind = replica.execute(BYTES_BEHIND, (lsn,)).fetchone()[0]
            if behind is None or behind <= 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ReplicaBehind(
                    f"The read replica at {describe(replica_url)} has not replayed the primary's WAL"
                    f" up to {lsn} within {timeout:.0f} s (still {behind} bytes behind)."
                )
            time.sleep(WAIT_INTERVAL_SECONDS)


async def replica_status(primary: Database, replica: Database) -> dict[str, object]:
    """The replica's lag behind the primary, for ``/health``: ``bytes_behind`` (WAL not yet
    replayed) and ``lag_seconds``; ``ok`` is False when either server cannot be asked."""
    try:
        async with asyncio.timeout(STATUS_TIMEOUT_SECONDS):
            await replica.ready()
            lsn = (await primary.fetch_all(PRIMARY_POSITION))[0]["lsn"]
            lag = (await replica.fetch_all(REPLICA_LAG, (lsn,)))[0]
    except (DatabaseUnavailable, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {STATUS_TIMEOUT_SECONDS:.0f} s"
        log.warning("Health check: the lag of the replica at %s is unknown (%s).",
                    describe(replica.url), reason)
        return {"ok": False, "error": "the replica or the primary is unreachable"}
    return {"ok": True, **lag}
