"""The orders' day partitions and the retentions, kept by the worker: the partitions at start-up,
then both every hour on the leader.

Each run creates the partitions of yesterday to a week ahead and moves rows out of the default
partition (``restaurant_app/partitions.py``); when every partition is there it changes nothing.
Then one bounded step of each retention removes what is older than it (``restaurant_app/retention.py``).
Hourly rather than daily: a run that finds the tables busy gives up after a few seconds.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from restaurant_app.database import outage_as_unavailable, until_available
from restaurant_app.partitions import describe_upkeep, keep_partitions
from restaurant_app.retention import apply_retention
from restaurant_app.worker import app, database, settings

log = logging.getLogger(__name__)

UPKEEP_INTERVAL_SECONDS = 3600.0
T = TypeVar("T")


async def on_own_connection(step: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T | None:
    """``step`` on a connection of its own; None if the orders tables stayed busy."""
    with outage_as_unavailable():
        async with await database.connect() as conn:
            try:
                return await step(conn)
            except psycopg.errors.LockNotAvailable:
                return None


async def upkeep_step(step: Callable[[psycopg.AsyncConnection], Awaitable[T]], doing: str,
                      when_busy: str) -> T | None:
    """Run ``step``, waiting out an outage. Orders go on being stored whatever happens here (into
    the default partition if need be), so a failure or busy tables are logged, not raised."""
    try:
        done = await until_available(lambda: on_own_connection(step), doing)
    except psycopg.Error as exc:
        log.error("Failed while %s: %s", doing, exc)
        return None
    if done is None:
        log.warning("The orders tables were busy; %s", when_busy)
    return done


async def upkeep() -> None:
    """Create the partitions due and log what changed."""
    await database.ready()
    done = await upkeep_step(keep_partitions, "creating the orders' day partitions",
                             "their day partitions will be checked again in an hour.")
    if done and done[0]:
        log.info("%s", describe_upkeep(*done))


async def retention() -> None:
    """Remove what the retentions say is old; tried again in an hour whatever happens."""
    removed = await upkeep_step(lambda conn: apply_retention(conn, settings),
                                "removing data older than its retention",
                                "old days of orders will be dropped in an hour.")
    if removed is not None:
        log.info("%s", removed.describe())


@app.task
async def partitions_at_start() -> None:
    await upkeep()


@app.timer(interval=UPKEEP_INTERVAL_SECONDS, on_leader=True)
async def partitions_every_hour() -> None:
    await upkeep()
    await retention()
