"""Retention: old orders' days dropped, old rejections, runs and minute and hour reports deleted,
in bounded steps, by the real upkeep against the real PostgreSQL; topics made with retention.ms."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app import retention
from restaurant_app.kafka_probe import topic_retention_ms
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderEvent, OrderItem
from restaurant_app.retention import Removed, apply_retention, cutoffs, deletes_due
from restaurant_app.settings import PROJECT_ROOT, Settings
from restaurant_app.worker import retention_ms_of
from tests.services import execute, produce, query, run_report_job, wait_until

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


def settings(**days: int) -> Settings:
    return replace(Settings.from_env(), **{f"{kind}_retention_days": n for kind, n in days.items()})


def test_cutoffs_keep_whole_utc_days_of_orders_and_leave_out_what_is_kept_for_ever():
    kept = cutoffs(settings(orders=30, rejected=0, report_runs=7, minute_reports=2, hour_reports=0), NOW)
    assert kept == {"orders": datetime(2026, 11, 1, tzinfo=UTC), "runs": NOW - timedelta(days=7),
                    "minute": NOW - timedelta(days=2)}
    kinds = [kind for kind, _ in deletes_due(kept)]
    assert kinds == ["order keys", "order events", "daily customers", "weekly and monthly customers",
                     "report runs",
                     "minute report_sales",
                     "minute report_dishes", "minute report_customers", "minute insights"]


def test_nothing_is_removed_when_every_retention_is_for_ever():
    assert cutoffs(settings(orders=0, rejected=0, report_runs=0, minute_reports=0, hour_reports=0),
                   NOW) == {}


def test_what_an_upkeep_removed_in_one_line():
    removed = Removed([NOW.date() - timedelta(days=41), NOW.date() - timedelta(days=40)],
                      {"order keys": 10, "report runs": 0}, ["order keys"])
    assert removed.describe() == ("Retention: dropped the orders of 2 day(s) (2026-10-21 to 2026-10-22);"
                                  " deleted 10 order keys; more of order keys next hour.")
    assert Removed().describe() == "Retention: nothing was old enough to remove."


def test_topic_retention_hours_as_retention_ms():
    assert (retention_ms_of(168), retention_ms_of(1), retention_ms_of(0)) == (604_800_000, 3_600_000, -1)


def order(at: datetime) -> Order:
    dish = MENU[1]
    return Order(order_id=str(uuid.uuid4()), created_at=at, customer_id=7, customer_name="Cliente 7",
                 channel="takeaway", payment_method="pix",
                 items=[OrderItem(dish=dish.name, category=dish.category, unit_price=dish.price,
                                  quantity=2)], total=dish.price * 2)


def count(database_url: str, statement: str, *params: object) -> int:
    return query(database_url, statement, params)[0][0]


def steps(database_url: str, kept: Settings) -> list[Removed]:
    """Upkeep steps, one after another, until one finds nothing to remove."""
    async def run() -> list[Removed]:
        done: list[Removed] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while not done or done[-1].days or any(done[-1].rows.values()):
                done.append(await apply_retention(conn, kept, batch_rows=1))
        return done

    return asyncio.run(run())


@pytest.mark.integration
def test_old_data_goes_in_bounded_steps_and_the_rest_stays(
    stack: ScratchStack, worker: WorkerProcess, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    day_40, day_35 = (now - timedelta(days=40)).replace(hour=12), (now - timedelta(days=35)).replace(hour=12)
    old = [order(day_40 + timedelta(minutes=m)) for m in range(3)] + [order(day_35)]
    recent = [order(now - timedelta(minutes=50 - m)) for m in range(2)]
    invalid = [json.dumps({**json.loads(o.dumps()), "channel": "teleport"}).encode() for o in recent]
    worker.env["TOPIC_RETENTION_HOURS"] = "5"
    worker.env["MAX_ORDER_AGE_DAYS"] = "60"  # the old orders are taken, as from a backfill
    worker.start()
    execute(database_url, "INSERT INTO report_runs (mode, status, started_at, finished_at, watermark)"
                          " VALUES ('incremental', 'failed', now() - interval '10 days',"
                          " now() - interval '10 days', now() - interval '10 days')")
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(None, o.dumps()) for o in old + recent] + [(None, m) for m in invalid])
    wait_until(lambda: count(database_url, "SELECT (SELECT count(*) FROM orders) + (SELECT count(*)"
                             " FROM rejected_orders WHERE dead_lettered_at IS NOT NULL)") == 8,
               message="the orders and rejections never all arrived")
    # A cancellation of an old order and of a recent one: each goes with its order.
    cancelled = [old[0], recent[0]]
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, OrderEvent(
        kind="cancellation", event_id=str(uuid.uuid4()), order_id=o.order_id,
        created_at=o.created_at + timedelta(minutes=5), reason="cliente desistiu").dumps())
        for o in cancelled])
    wait_until(lambda: count(database_url, "SELECT count(*) FROM order_events") == 2,
               message="the cancellations were never stored")
    topics = [worker.env["ORDERS_TOPIC"], worker.env["DEAD_LETTER_TOPIC"]]
    assert asyncio.run(topic_retention_ms(stack.bootstrap_servers, topics)) == dict.fromkeys(
        topics, 5 * 3_600_000)
    worker.stop()
    assert run_report_job(database_url)["exit_code"] == 0
    rejected = [row[0] for row in query(database_url, "SELECT id FROM rejected_orders ORDER BY id")]
    execute(database_url, "UPDATE rejected_orders SET rejected_at = now() - interval '40 days'")
    execute(database_url, "UPDATE rejected_orders SET dead_lettered_at = NULL WHERE id = %s", (rejected[1],))

    # The upkeep logs in as the worker's own role, as make run's workers do: it owns no table and
    # works through migration 024's functions.
    name = conninfo_to_dict(database_url)["dbname"]
    stack.postgres.enable_roles(name)
    ingest = stack.postgres.role_url("restaurant_ingest", name)
    # 0 keeps for ever: the upkeep, as `python -m restaurant_app.partitions` runs it, only makes
    # the old days' partitions (moving their orders out of the default partition)
    forever = {f"{kind}_RETENTION_DAYS": "0" for kind in ("ORDERS", "REJECTED", "REPORT_RUNS",
                                                          "MINUTE_REPORTS", "HOUR_REPORTS")}
    once = subprocess.run([sys.executable, "-m", "restaurant_app.partitions"], cwd=PROJECT_ROOT, text=True,
                          env={**os.environ, **forever, "DATABASE_URL": ingest},
                          capture_output=True, timeout=120, check=False)
    assert once.returncode == 0, once.stderr
    assert "Retention: nothing was old enough to remove." in once.stderr
    old_partitions = [f"orders_p{day:%Y%m%d}" for day in (day_40, day_35)]
    assert count(database_url, "SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", old_partitions) == 2
    sales_before = count(database_url, "SELECT count(*) FROM report_sales WHERE store_id = ''")
    assert count(database_url, "SELECT count(*) FROM report_runs") == 2

    monkeypatch.setattr(retention, "BATCHES_PER_STEP", 1)
    monkeypatch.setattr(retention, "PARTITIONS_PER_STEP", 1)
    done = steps(ingest, settings(orders=30, rejected=30, report_runs=7, minute_reports=30,
                                        hour_reports=36))
    assert [step.days for step in done[:2]] == [[day_40.date()], [day_35.date()]]
    assert all(n <= 1 for step in done for n in step.rows.values())  # one batch of one row a step
    assert len(done) >= 5 and done[0].more

    assert count(database_url, "SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", old_partitions) == 0
    assert sorted(r[0] for r in query(database_url, "SELECT order_id::text FROM orders")) == sorted(
        o.order_id for o in recent)
    assert count(database_url, "SELECT count(*) FROM order_keys") == len(recent)
    assert count(database_url, "SELECT count(*) FROM order_items") == len(recent)
    assert query(database_url, "SELECT order_id::text FROM order_events") == [(recent[0].order_id,)]
    assert [r[0] for r in query(database_url, "SELECT id FROM rejected_orders")] == [rejected[1]]
    assert query(database_url, "SELECT status FROM report_runs") == [("succeeded",)]
    cutoff_hour = now - timedelta(days=36)
    assert query(database_url, "SELECT granularity, count(*) FROM report_sales"
                               " WHERE store_id = '' AND period_start < %s GROUP BY 1 ORDER BY 1",
                 (now - timedelta(days=30),)) == [
        ("day", 2), ("hour", 1)]  # the 35-day-old hour stays; the 40-day-old one and every minute go
    assert count(database_url, "SELECT count(*) FROM report_sales WHERE store_id = ''"
                               " AND granularity = 'hour' AND period_start < %s", cutoff_hour) == 0
    assert count(database_url, "SELECT count(*) FROM report_sales WHERE store_id = ''"
                               " AND granularity = 'minute' AND period_start > %s",
                 now - timedelta(hours=2)) == 2
    assert count(database_url, "SELECT count(*) FROM report_customers WHERE granularity = 'day'"
                               " AND period_start < %s", now - timedelta(days=30)) == 0
    minutes_and_hour_gone = len(old) + 1
    chain_sales = count(database_url, "SELECT count(*) FROM report_sales WHERE store_id = ''")
    assert sales_before - chain_sales == minutes_and_hour_gone
