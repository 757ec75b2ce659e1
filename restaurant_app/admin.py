"""The operator's command: ``python -m restaurant_app.admin <command>``.

Commands: ``migrate [--dry-run]``, ``status``, ``erase-customer --customer-id N [--name ...]
[--dry-run]``, ``rebuild-reports --from WHEN --to WHEN [--run]``, ``replay --from WHEN [--dry-run]``
(the stopped workers read the orders topic again from the first message sent at WHEN or later),
``reset [--yes]`` (delete what a stopped ``make run`` keeps in ``DATA_DIR`` but its jars and tools).

Exit codes: 0 done (status: all well); 1 failed (PostgreSQL or Kafka unreachable, the report
run failed, replay while workers run, reset while make run runs); 2 a bad option or setting, or
reset without --yes; 3 status: reachable, but something needs attention (migrations pending, the
last report run failed, or none succeeded lately).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from restaurant_app import erasure
from restaurant_app.database import Database, DatabaseUnavailable, describe, outage_as_unavailable
from restaurant_app.errors import PipelineError
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers, topic_retention_ms
from restaurant_app.logs import configure_logging
from restaurant_app.settings import PROJECT_ROOT, Settings, settings_or_exit

log = logging.getLogger("restaurant_app.admin")

OK, FAILED, USAGE, ATTENTION = 0, 1, 2, 3
STALE_RUNS = 10
"""Report intervals without a successful run after which ``status`` asks for attention."""

QUEUE_WINDOWS = """
INSERT INTO report_skipped_windows (period_start, run_id)
SELECT DISTINCT date_trunc('minute', created_at), 0 FROM orders
WHERE created_at >= %(start)s AND created_at < %(end)s
UNION
SELECT period_start, 0 FROM report_sales
WHERE granularity = 'minute' AND period_start >= %(start)s AND period_start < %(end)s
ON CONFLICT (period_start) DO NOTHING
"""

STATUS = """
SELECT (SELECT count(*) FROM order_keys),
       (SELECT max(ingested_at) FROM orders WHERE ingested_at > now() - interval '1 day'),
       (SELECT min(created_at) FROM order_keys),
       (SELECT count(*) FROM rejected_orders),
       (SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NULL),
       (SELECT max(finished_at) FROM report_runs WHERE status = 'succeeded'),
       (SELECT status FROM report_runs ORDER BY run_id DESC LIMIT 1),
       (SELECT count(*) FROM report_skipped_windows)
"""


async def migrate(settings: Settings, dry_run: bool) -> int:
    database = Database(settings.database_url)
    if dry_run:
        pending = await database.pending_migrations()
        print(f"{len(pending)} migration(s) to apply to {describe(settings.database_url)}"
              + (f": {', '.join(pending)}" if pending else "."))
        return OK
    applied = await database.migrate()
    print(f"Applied {len(applied)} migration(s) to {describe(settings.database_url)}"
          + (f": {', '.join(applied)}" if applied else "; it was up to date."))
    return OK


async def status(settings: Settings) -> int:
    database = Database(settings.database_url)
    pending = await database.pending_migrations()
    print(f"PostgreSQL {describe(settings.database_url)}: reachable; {len(pending)} migration(s) pending"
          + (f" ({', '.join(pending)})" if pending else ""))
    if pending:  # the tables may lack what the figures below read
        return ATTENTION
    with outage_as_unavailable():
        async with await database.connect() as conn:
            row = await (await conn.execute(STATUS)).fetchone()
    orders, last_in, oldest, rejected, waiting, last_success, last_status, queued = row
    print(f"Orders: {orders} stored, the oldest of {moment(oldest)}, the last stored {moment(last_in)}")
    print(f"Rejected messages: {rejected} kept, {waiting} waiting for the dead-letter topic")
    print(f"Report runs: the last succeeded {moment(last_success)}; the latest is {last_status or 'none'};"
          f" {queued} minute window(s) waiting to be recomputed")
    kafka_fine = await kafka_status(settings)
    stale = last_success is None or datetime.now(UTC) - last_success > timedelta(
        seconds=STALE_RUNS * settings.report_interval_seconds)
    if not kafka_fine:
        return FAILED
    return ATTENTION if last_status == "failed" or (stale and orders) else OK


def moment(value: datetime | None) -> str:
    return "none" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


async def kafka_status(settings: Settings) -> bool:
    """Print whether Kafka answers and how long it keeps the topics; return whether it answered."""
    try:
        brokers = await count_brokers(settings.bootstrap_servers, security=settings.kafka_security)
    except KafkaUnavailable as exc:
        print(f"Kafka {settings.bootstrap_servers}: unreachable ({exc})")
        return False
    print(f"Kafka {settings.bootstrap_servers}: {brokers} broker(s)")
    print(await kafka_copies(settings))
    return True


async def kafka_copies(settings: Settings) -> str:
    """How long Kafka keeps the topics' messages, which no one can edit there."""
    topics = [settings.orders_topic, settings.dead_letter_topic]
    try:
        retention = await topic_retention_ms(settings.bootstrap_servers, topics,
                                             security=settings.kafka_security)
    except KafkaUnavailable as exc:
        return f"Kafka could not be asked how long it keeps topics {', '.join(topics)}: {exc}."
    kept = "; ".join(f"{topic!r} {describe_retention(ms)}" for topic, ms in retention.items())
    return f"Kafka's copies of messages cannot be edited; they go when the topic's retention ends: {kept}."


def describe_retention(ms: int | None) -> str:
    if ms is None:
        return "does not exist"
    if ms < 0:
        return "keeps messages for ever (retention.ms=-1)"
    return f"keeps messages {ms / 86_400_000:g} day(s) (retention.ms={ms})"


async def erase_customer(settings: Settings, customer_id: int, names: list[str], dry_run: bool) -> int:
    database = Database(settings.database_url)
    await database.migrate()
    with outage_as_unavailable():
        async with await database.connect() as conn:
            erased = await erasure.erase_customer(conn, customer_id, names, dry_run=dry_run)
    print(erased.describe(dry_run))
    print(await kafka_copies(settings))
    return OK


async def queue_windows(settings: Settings, start: datetime, end: datetime) -> int:
    """List the minute windows of [start, end) with orders or reports for the next run to recompute."""
    with outage_as_unavailable():
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            return (await conn.execute(QUEUE_WINDOWS, {"start": start, "end": end})).rowcount


def rebuild_reports(settings: Settings, start: datetime, end: datetime, run_now: bool) -> int:
    queued = asyncio.run(queue_windows(settings, start, end))
    print(f"Queued {queued} minute window(s) from {moment(start)} to {moment(end)} (and their hours"
          " and days) for the next successful report run to recompute.")
    if not run_now:
        return OK
    job = subprocess.run([sys.executable, "-m", "spark_reports"], cwd=PROJECT_ROOT, check=False)
    return OK if job.returncode == 0 else FAILED


class ReplayRefused(PipelineError):
    """The workers' consumer group has members, or the orders topic is missing: nothing moved."""


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many consumers the group has now (0 once its workers stopped and their session ended)."""
    [response] = await admin.describe_consumer_groups([group])
    return sum(len(described[5]) for described in response.groups)


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    [described] = await admin.describe_topics([topic])
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def replay_offsets(settings: Settings, start: datetime, dry_run: bool) -> list[str]:
    """Move the workers' committed offsets on every partition of the orders topic to the first
    message sent at ``start`` or later (the end if none); one line per partition."""
    group, options = settings.app_id, settings.kafka_security.client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **options)
    await admin.start()
    try:
        members = await group_members(admin, group)
        if members:
            raise ReplayRefused(f"replay: the workers' consumer group {group!r} has {members} member(s);"
                              " stop every worker (and wait for their session to end), then replay.")
        partitions = await topic_partitions(admin, settings.orders_topic)
        if not partitions:
            raise ReplayRefused(f"replay: the orders topic {settings.orders_topic!r} does not exist.")
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                enable_auto_commit=False, **options)
    await consumer.start()
    try:
        consumer.assign(partitions)
        found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        new = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}
        current = {tp: await consumer.committed(tp) for tp in partitions}
        lines = [f"{tp.topic}[{tp.partition}]: {'none' if current[tp] is None else current[tp]} -> {new[tp]}"
                 for tp in partitions]
        if not dry_run:
            await consumer.commit(new)
        return lines
    finally:
        await consumer.stop()


def replay(settings: Settings, start: datetime, dry_run: bool) -> int:
    try:
        lines = asyncio.run(replay_offsets(settings, start, dry_run))
    except ReplayRefused as exc:
        print(exc, file=sys.stderr)
        return FAILED
    except (KafkaError, OSError) as exc:
        print(f"replay: Kafka {settings.bootstrap_servers} is unreachable: {exc}", file=sys.stderr)
        return FAILED
    print("\n".join(lines))
    done = "nothing changed" if dry_run else "the workers read from there at their next start"
    print(f"{'Would move' if dry_run else 'Moved'} group {settings.app_id!r} to the first message sent at"
          f" {moment(start)} or later; {done} (orders already stored are not stored twice).")
    return OK


KEPT = ("jars", "bin")
"""What ``reset`` leaves in ``DATA_DIR``: the jars Maven fetched and the tools ``make`` built."""


def reset(settings: Settings, yes: bool) -> int:
    """Delete what ``make run`` keeps in ``DATA_DIR`` but ``KEPT``, once it is stopped and ``yes``."""
    from infra.java import StackError  # infra runs from a checkout, as make run does
    from infra.rotation import ensure_stopped

    data_dir = settings.data_dir
    try:
        ensure_stopped(data_dir, "reset would delete the data it is using.")
    except StackError as exc:
        print(f"reset: {exc}", file=sys.stderr)
        return FAILED
    doomed = sorted(p for p in data_dir.iterdir() if p.name not in KEPT) if data_dir.is_dir() else []
    names = ", ".join(p.name for p in doomed) or "nothing"
    if not yes:
        print(f"reset: would delete {len(doomed)} item(s) in {data_dir} ({names}), keeping"
              f" {', '.join(KEPT)}; run again with --yes to delete them.", file=sys.stderr)
        return USAGE
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    print(f"Deleted {len(doomed)} item(s) in {data_dir} ({names}); make run starts empty next time.")
    return OK


def when(zone: str):
    """An argparse type: an ISO 8601 date or time, in the restaurant's time zone unless it says."""
    def parse(text: str) -> datetime:
        value = datetime.fromisoformat(text)
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))

    parse.__name__ = "ISO 8601 date or time"
    return parse


def parser(settings: Settings) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m restaurant_app.admin", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    migrate_ = commands.add_parser("migrate", help="apply the pending database migrations")
    migrate_.add_argument("--dry-run", action="store_true", help="list them; apply nothing")
    commands.add_parser("status", help="what is stored, the report runs and Kafka;"
                        " exit code 3 if something needs attention")
    erase = commands.add_parser("erase-customer", help="erase one customer at their request (LGPD)")
    erase.add_argument("--customer-id", type=int, required=True)
    erase.add_argument("--name", action="append", default=[],
                       help="a name they used that none of their stored orders carries (repeatable)")
    erase.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    rebuild = commands.add_parser("rebuild-reports", help="recompute the reports of a time range")
    rebuild.add_argument("--from", dest="start", type=when(settings.restaurant_timezone), required=True,
                         help="start (ISO 8601; RESTAURANT_TIMEZONE unless it has an offset)")
    rebuild.add_argument("--to", dest="end", type=when(settings.restaurant_timezone), required=True,
                         help="end, excluded")
    rebuild.add_argument("--run", action="store_true", help="run the report job now rather than"
                         " leave the windows to the worker's next run")
    replay_ = commands.add_parser("replay", help="make the stopped workers read the orders topic again"
                                  " from a time (e.g. after restoring a database backup)")
    replay_.add_argument("--from", dest="start", type=when(settings.restaurant_timezone), required=True,
                         help="when the first message to read again was sent (ISO 8601)")
    replay_.add_argument("--dry-run", action="store_true",
                         help="print each partition's current -> new offset; move nothing")
    reset_ = commands.add_parser("reset", help="delete the orders, reports, topics and secrets of a"
                                 " stopped make run (DATA_DIR), but its jars and tools")
    reset_.add_argument("--yes", action="store_true", help="delete them (without it: say what would go)")
    return top


def dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "migrate":
        return asyncio.run(migrate(settings, args.dry_run))
    if args.command == "status":
        return asyncio.run(status(settings))
    if args.command == "erase-customer":
        return asyncio.run(erase_customer(settings, args.customer_id, args.name, args.dry_run))
    if args.command == "reset":
        return reset(settings, args.yes)
    if args.command == "replay":
        return replay(settings, args.start, args.dry_run)
    return rebuild_reports(settings, args.start, args.end, args.run)


def main(argv: list[str] | None = None) -> int:
    settings = settings_or_exit()
    configure_logging(settings)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    args = parser(settings).parse_args(argv)
    if args.command == "rebuild-reports" and args.end <= args.start:
        print("rebuild-reports: --to must be later than --from", file=sys.stderr)
        return USAGE
    try:
        return dispatch(settings, args)
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:
        print(f"PostgreSQL {describe(settings.database_url)} is unreachable: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
