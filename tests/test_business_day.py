"""The business day (BUSINESS_DAY_STARTS): a restaurant that closes after midnight counts its night
in the day it opened, in the day reports, the dashboard's "today" and the day's dish ranking."""

import asyncio
import uuid
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from restaurant_app.business_day import date_start, day_start, shift
from restaurant_app.models import Order, OrderItem
from restaurant_app.order_sink import save_orders
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.settings import SettingError, Settings
from restaurant_app.web.figures import CURRENT_DISHES, TODAY_AGAINST_YESTERDAY
from spark_reports import job
from tests.services import query

ZONE = ZoneInfo("America/Sao_Paulo")
LISBON = ZoneInfo("Europe/Lisbon")


def local(text: str, zone: ZoneInfo = ZONE) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(("moment", "starts"), [
    ("2026-11-26 01:30", "2026-11-25 04:00"),
    ("2026-11-26 03:59:59", "2026-11-25 04:00"),
    ("2026-11-26 04:00", "2026-11-26 04:00"),
    ("2026-11-25 23:30", "2026-11-25 04:00"),
])
def test_the_night_belongs_to_the_day_it_opened(moment: str, starts: str):
    assert day_start(local(moment), ZONE, 4) == local(starts)
    assert day_start(local(moment).astimezone(UTC), ZONE, 4) == local(starts)


def test_at_midnight_the_business_day_is_the_calendar_day():
    assert day_start(local("2026-11-26 00:00"), ZONE, 0) == local("2026-11-26 00:00")
    assert date_start(date(2026, 11, 26), ZONE, 0) == local("2026-11-26 00:00")


def test_on_a_day_the_clock_goes_forward_the_start_is_midnight_plus_elapsed_hours():
    # Lisbon goes from 01:00 to 02:00 on 2026-03-29: 4 hours after midnight is 05:00 on the clock.
    assert date_start(date(2026, 3, 29), LISBON, 4) == local("2026-03-29 05:00", LISBON)


@pytest.mark.parametrize(("value", "hour"), [("04:00", 4), ("4:00", 4), ("00:00", 0), ("23:00", 23)])
def test_business_day_starts_takes_a_whole_hour(value: str, hour: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BUSINESS_DAY_STARTS", value)
    assert Settings.from_env().business_day_starts_hour == hour


@pytest.mark.parametrize("value", ["04:30", "24:00", "4", "04h", "-1:00"])
def test_business_day_starts_refuses_anything_else(value: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BUSINESS_DAY_STARTS", value)
    with pytest.raises(SettingError, match="BUSINESS_DAY_STARTS must be a whole hour of the clock"):
        Settings.from_env()


# --- Reports and the dashboard on PostgreSQL and Spark -------------------------------------

# Around the night of 2026-11-25 to 26 in São Paulo, with the day starting at 04:00.
STRADDLING = ["2026-11-25 03:00", "2026-11-25 23:30", "2026-11-26 01:30", "2026-11-26 03:59:59",
              "2026-11-26 04:00"]
DAY_REPORTS = "SELECT period_start, period_end, orders, unique_customers FROM report_sales" \
              " WHERE granularity = 'day' AND store_id = '' ORDER BY period_start"


PERIOD_CUSTOMERS = "SELECT * FROM report_period_customers ORDER BY 1, 2"


def order_at(moment: str, customer: int) -> Order:
    item = OrderItem(dish="Picanha na Chapa", category="prato principal", unit_price=Decimal("89.90"),
                     quantity=1)
    return Order(order_id=str(uuid.uuid4()), created_at=local(moment).astimezone(UTC), customer_id=customer,
                 customer_name=f"Cliente {customer}", channel="dine_in", payment_method="pix", items=[item],
                 total=item.subtotal)


def run_job(url: str, hours: int, full: bool) -> dict:
    settings = replace(Settings.from_env(), database_url=url, spark_driver_memory="512m",
                       restaurant_timezone=str(ZONE), business_day_starts_hour=hours)
    return asdict(job.run(settings, full=full))


@pytest.mark.integration
def test_day_reports_follow_the_business_day(database_url: str):
    asyncio.run(save_orders(database_url, [order_at(m, n) for n, m in enumerate(STRADDLING, start=1)]))

    assert run_job(database_url, 0, full=False)["status"] == "succeeded"
    assert query(database_url, DAY_REPORTS) == [
        (local("2026-11-25 00:00"), local("2026-11-26 00:00"), 2, 2),
        (local("2026-11-26 00:00"), local("2026-11-27 00:00"), 3, 3),
    ]
    assert query(database_url, PERIOD_CUSTOMERS) == [("month", local("2026-11-01 00:00"), 5),
                                                      ("week", local("2026-11-23 00:00"), 5)]
    assert run_job(database_url, 4, full=True)["status"] == "succeeded"
    assert query(database_url, DAY_REPORTS) == [
        (local("2026-11-24 04:00"), local("2026-11-25 04:00"), 1, 1),
        (local("2026-11-25 04:00"), local("2026-11-26 04:00"), 3, 3),
        (local("2026-11-26 04:00"), local("2026-11-27 04:00"), 1, 1),
    ]
    dishes = ("SELECT period_start, dish, quantity FROM report_dishes WHERE granularity = 'day'"
              " AND store_id = '' ORDER BY 1")
    assert [row[0] for row in query(database_url, dishes)] == [
        local("2026-11-24 04:00"), local("2026-11-25 04:00"), local("2026-11-26 04:00")]
    # A week and a month start with their first business day, where the history looks for them.
    assert query(database_url, PERIOD_CUSTOMERS) == [("month", local("2026-11-01 04:00"), 5),
                                                      ("week", local("2026-11-23 04:00"), 5)]


@pytest.mark.integration
def test_the_dashboards_today_starts_when_the_business_day_does(database_url: str):
    with psycopg.connect(database_url, autocommit=True) as conn:
        asyncio.run(save_orders(database_url, []))  # the schema
        for hours in (0, 4, 23):
            now = datetime.now(UTC)
            clock = {"zone": str(ZONE), "shift": shift(hours), "store": CHAIN_STORE}
            rows = conn.execute(TODAY_AGAINST_YESTERDAY, clock).fetchall()
            starts = {row[0]: row[1] for row in rows}
            if day_start(datetime.now(UTC), ZONE, hours) != day_start(now, ZONE, hours):
                continue  # the day turned while the query ran
            assert starts["today"] == day_start(now, ZONE, hours)
            yesterday = (now.astimezone(ZONE) - timedelta(days=1)).astimezone(UTC)
            assert starts["yesterday"] == day_start(yesterday, ZONE, hours)
            windows = conn.execute(CURRENT_DISHES, {**clock, "limit": 5}).fetchall()
            assert {row[0]: row[1] for row in windows}["day"] == day_start(now, ZONE, hours)
