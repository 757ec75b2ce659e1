"""``GET /health``: each part's status, from probes run at most once a second, and the overall one;
``GET /readyz`` (can this worker store orders: 200 or 503) and ``GET /livez`` (does it answer at
all) for orchestrators' probes.

The overall status is ``unavailable`` (503) when Kafka, PostgreSQL or ingest is down: orders are
not being stored. It is ``degraded`` (200) when only another part is down: the replica, the Spark
Connect server, the reports (the last runs failed, or a run skipped windows), or Kafka's retention
(it deleted orders before they were stored, ``restaurant_app/lost_offsets.py``); the worker still
stores orders, and the reports catch up once the part is back. ``down`` names the parts that are not ok.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlsplit

from faust import web

from restaurant_app.database import DatabaseUnavailable, describe
from restaurant_app.ingest_state import ingest_state
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers
from restaurant_app.lost_offsets import lost_offsets
from restaurant_app.replica import replica_status
from restaurant_app.settings import shown_remote
from restaurant_app.web.rows import json_ready
from restaurant_app.worker import app, database, reports_database, settings

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0
DATABASE_TIMEOUT_SECONDS = 2.0
SPARK_TIMEOUT_SECONDS = 2.0
SPARK_CONNECT_PORT = 15002

Status = dict[str, object]

STORING_PARTS = ("kafka", "database", "ingest")
"""The parts without which no order is stored: any of them down makes /health answer 503."""

# Minute windows a run skipped, and the report runs that failed since the last one that succeeded.
REPORTS_STATE = """
SELECT (SELECT count(*)::int FROM report_skipped_windows) AS skipped_windows,
       (SELECT min(period_start) FROM report_skipped_windows) AS oldest_skipped,
       (SELECT count(*)::int FROM report_runs
        WHERE status = 'failed' AND run_id > coalesce((SELECT max(run_id) FROM report_runs
                                                       WHERE status = 'succeeded'), 0)) AS failed_runs
"""


class CachedProbe:
    """Runs ``check`` at most once per ``interval`` seconds; callers in between share its answer.

    An answer is reused for ``interval`` seconds after its check finished, and callers that
    come while a check runs wait for that check instead of starting another.
    """

    def __init__(self, check: Callable[[], Awaitable[Status]],
                 interval: float = PROBE_INTERVAL_SECONDS) -> None:
        self._check = check
        self._interval = interval
        self._answer: asyncio.Future[Status] | None = None
        self._finished_at = -math.inf
        self.runs = 0  # checks started, for tests and debugging

    async def status(self) -> Status:
        if self._answer is None or (self._answer.done() and self._stale()):
            self._answer = asyncio.ensure_future(self._run())
        # A caller that goes away (a closed connection) must not cancel the others' check.
        return await asyncio.shield(self._answer)

    def _stale(self) -> bool:
        return time.monotonic() - self._finished_at >= self._interval

    async def _run(self) -> Status:
        self.runs += 1
        try:
            return await self._check()
        finally:
            self._finished_at = time.monotonic()


async def kafka_status() -> Status:
    try:
        brokers = await count_brokers(settings.bootstrap_servers, security=settings.kafka_security)
        return {"ok": True, "brokers": brokers}
    except KafkaUnavailable as exc:
        log.warning("Health check: Kafka at %s is unreachable (%s).", settings.bootstrap_servers, exc)
        return {"ok": False, "error": "Kafka is unreachable"}


async def database_status() -> Status:
    """A trivial query on a pooled connection, so that checking opens no connection of its own."""
    try:
        await asyncio.wait_for(database.fetch_all("SELECT 1"), DATABASE_TIMEOUT_SECONDS)
        return {"ok": True}
    except (DatabaseUnavailable, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {DATABASE_TIMEOUT_SECONDS:.0f} s"
        log.warning("Health check: PostgreSQL at %s is unreachable (%s).", describe(database.url), reason)
        return {"ok": False, "error": "PostgreSQL is unreachable"}


async def spark_status(remote: str) -> Status:
    """Whether the Spark Connect server at ``remote`` (``sc://host:port``) accepts a TCP connection."""
    address = urlsplit(remote)
    host, port = address.hostname or "localhost", address.port or SPARK_CONNECT_PORT
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), SPARK_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        log.warning("Health check: the Spark Connect server at %s is unreachable (%s).", shown_remote(remote),
                    str(exc) or "no answer")
        return {"ok": False, "remote": shown_remote(remote), "error": "Spark Connect is unreachable"}
    writer.close()
    return {"ok": True, "remote": shown_remote(remote)}


async def reports_status() -> Status:
    """Not ok while the last report runs failed (``failed_runs`` since the last success), or while
    some minute windows may miss orders a run skipped after repeated failures (``skipped_windows``)."""
    try:
        rows = await asyncio.wait_for(database.fetch_all(REPORTS_STATE), DATABASE_TIMEOUT_SECONDS)
    except (DatabaseUnavailable, TimeoutError):
        return {"ok": False, "error": "PostgreSQL is unreachable"}
    state = rows[0]
    return {"ok": state["skipped_windows"] == 0 and state["failed_runs"] == 0, **state}


def overall(parts: dict[str, Status]) -> tuple[str, int, list[str]]:
    """The overall status, its HTTP code and the parts that are down (see the module's docstring)."""
    down = [name for name, part in parts.items() if not part["ok"]]
    if any(name in STORING_PARTS for name in down):
        return "unavailable", 503, down
    return ("degraded" if down else "ok"), 200, down


kafka_check = CachedProbe(kafka_status)
database_check = CachedProbe(database_status)
replica_check = CachedProbe(partial(replica_status, database, reports_database))
spark_check = CachedProbe(lambda: spark_status(settings.spark_remote))
reports_check = CachedProbe(reports_status)


def ingest_status() -> Status:
    """Whether the persistence agent is storing, or holding a batch that an error stopped."""
    if ingest_state.error is None:
        return {"ok": True}
    return {"ok": False, "error": ingest_state.error, "since": ingest_state.stalled_since}


async def every_part() -> dict[str, Status]:
    """Each part's status: the replica's and Spark's where they are configured."""
    kafka, postgres, reports = await asyncio.gather(
        kafka_check.status(), database_check.status(), reports_check.status())
    parts = {"kafka": kafka, "database": postgres, "ingest": ingest_status(), "reports": reports,
             "kafka_retention": lost_offsets.status()}
    if settings.reports_database_url:
        parts["replica"] = await replica_check.status()
    if settings.spark_remote:
        parts["spark"] = await spark_check.status()
    return parts


@app.page("/health")
async def health(view: web.View, request: web.Request) -> web.Response:
    """Each part's status and the overall one: 503 when orders are not being stored, else 200."""
    parts = await every_part()
    status, code, down = overall(parts)
    return view.json(json_ready({"status": status, "down": down, **parts}), status=code)


@app.page("/readyz")
async def readyz(view: web.View, request: web.Request) -> web.Response:
    """Whether this worker can store orders now: 200, or 503 naming the storing parts that are down.

    A readiness probe: the parts that only delay reports (replica, Spark, skipped windows) are
    left to /health."""
    kafka, postgres = await asyncio.gather(kafka_check.status(), database_check.status())
    parts = {"kafka": kafka, "database": postgres, "ingest": ingest_status()}
    _, code, down = overall(parts)
    status = "ready" if code == 200 else "unavailable"
    return view.json(json_ready({"status": status, "down": down, **parts}), status=code)


@app.page("/livez")
async def livez(view: web.View, request: web.Request) -> web.Response:
    """200 whenever the worker's event loop answers: a liveness probe, which checks no other part
    (a worker waiting out a PostgreSQL outage is alive, and restarting it would not help)."""
    return view.json({"status": "alive"})
