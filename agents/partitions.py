"""The orders' day partitions and the retentions, kept by the worker: the partitions at start-up,
then both every hour on the leader.

Each run creates the partitions of yesterday to a week ahead and moves rows out of the default
partition (``restaurant_app/partitions.py``); when every partition is there it changes nothing.
Then one bounded step of each retention removes what is older than it (``restaurant_app/retention.py``).
Hourly rather than daily: a run that finds the tables busy gives up after a few seconds.
"""

import logging
from datetime import date

import psycopg

from restaurant_app.database import outage_as_unavailable, until_available
from restaurant_app.partitions import describe_upkeep, keep_partitions
from restaurant_app.retention import Removed, apply_retention
from restaurant_app.worker import app, database, settings

log = logging.getLogger(__name__)

UPKEEP_INTERVAL_SECONDS = 3600.0


async def keep_once() -> tuple[list[date], int] | None:
    """One upkeep on a connection of its own; None if the tables stayed busy."""
    with outage_as_unavailable():
        async with await database.connect() as conn:
            try:
                return await keep_partitions(conn)
            except psycopg.errors.LockNotAvailable:
                return None


async def upkeep() -> None:
    """Create the partitions due and log what changed. Orders go on being stored whatever happens
    here (into the default partition if need be), so a failure is logged, not raised."""
    await database.ready()
    try:
        done = await until_available(keep_once, "creating the orders' day partitions")
    except psycopg.Error as exc:
        log.error("Could not create the orders' day partitions: %s", exc)
        return
    if done is None:
        log.warning("The orders tables were busy; their day partitions will be checked again in an hour.")
    elif done[0]:
        log.info("%s", describe_upkeep(*done))


async def retain_once() -> Removed | None:
    """One step of every retention on a connection of its own; None if the orders stayed busy."""
    with outage_as_unavailable():
        async with await database.connect() as conn:
            try:
                return await apply_retention(conn, settings)
            except psycopg.errors.LockNotAvailable:
                return None


async def retention() -> None:
    """Remove what the retentions say is old; a failure is logged and tried again in an hour."""
    try:
        removed = await until_available(retain_once, "removing data older than its retention")
    except psycopg.Error as exc:
        log.error("Could not remove data older than its retention: %s", exc)
        return
    if removed is None:
        log.warning("The orders tables were busy; old days of orders will be dropped in an hour.")
    else:
        log.info("%s", removed.describe())


@app.task
async def partitions_at_start() -> None:
    await upkeep()


@app.timer(interval=UPKEEP_INTERVAL_SECONDS, on_leader=True)
async def partitions_every_hour() -> None:
    await upkeep()
    await retention()
