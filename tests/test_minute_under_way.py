"""The minute under way on the dashboard: a provisional report from its stored orders, equal to SQL."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from infra.scratch import WorkerProcess
from restaurant_app.models import OrderEvent
from restaurant_app.order_sink import save_orders
from restaurant_app.report_tables import BILL_FIGURES
from restaurant_app.traffic import OrderGenerator
from tests.services import get, query
from tests.test_report_figures import EXPECTED_FIGURES, store
from tests.test_reports_job import EXPECTED_SALES, ZONE, make_order

pytestmark = pytest.mark.integration

ATTEMPTS = 3
"""Minutes tried: the minute may close between storing the orders and reading it."""


def orders_of_this_minute(customer: int) -> list:
    """Orders of the minute under way: a returning customer, an anonymous order, a tie broken by name."""
    now = datetime.now(UTC)
    orders = [
        make_order(now, customer, [("Caipirinha", 2), ("Pizza Margherita", 1)], channel="delivery"),
        make_order(now, customer, [("Brigadeiro Gourmet", 2)], payment="credit_card"),
        make_order(now, customer + 1, [("Pizza Margherita", 1)], channel="takeaway", payment="cash"),
    ]
    anonymous = make_order(now, 0, [("Salada Caesar", 1)])
    return [*orders, msgspec.structs.replace(anonymous, customer_id=None, customer_name=None)]


def as_figures(body: dict) -> tuple:
    """The endpoint's answer in the columns of EXPECTED_SALES, less the spend per customer."""
    return (datetime.fromisoformat(body["period_start"]), datetime.fromisoformat(body["period_end"]),
            body["orders"], body["items_sold"], Decimal(body["gross_revenue"]), Decimal(body["avg_ticket"]),
            body["unique_customers"], body["top_dish"], body["top_dish_quantity"],
            *({k: Decimal(str(v)) for k, v in body[part].items()}
              for part in ("revenue_by_channel", "revenue_by_payment")))


def in_database(database_url: str, minute: datetime) -> tuple:
    """SQL over the stored orders (the report tests' own computation) for ``minute``."""
    rows = [row for row in query(database_url, EXPECTED_SALES, {"unit": "minute", "zone": ZONE})
            if row[0] == minute]
    assert rows, f"no stored order in the minute {minute}"
    row = rows[0]
    return (*row[:7], *row[8:10], *({k: Decimal(str(v)) for k, v in part.items()} for part in row[10:12]))


def test_the_minute_under_way_equals_sql_over_its_stored_orders(worker: WorkerProcess, database_url: str):
    worker.start()
    status, body = get(f"{worker.url}/api/dashboard/minute")
    assert status == 200 and body["orders"] == 0 and body["top_dish"] is None, body
    for attempt in range(ATTEMPTS):
        stored = orders_of_this_minute(9000 + 10 * attempt)
        asyncio.run(save_orders(database_url, stored))
        status, body = get(f"{worker.url}/api/dashboard/minute")
        assert status == 200, body
        minute = stored[0].created_at.replace(second=0, microsecond=0)
        if datetime.fromisoformat(body["period_start"]) == minute:
            break
    else:
        pytest.fail(f"the minute closed before each of {ATTEMPTS} reads")
    assert body["provisional"] is True and body["source"] == "orders"
    assert as_figures(body) == in_database(database_url, minute)
    assert body["orders"] == len(stored) and body["unique_customers"] == 2
    assert body["top_dish"] == "Brigadeiro Gourmet"  # two of it and of Caipirinha: the name decides
    computed_at = datetime.fromisoformat(body["computed_at"])
    assert minute <= computed_at < minute + timedelta(minutes=1)
    # Read afresh each time: an order stored now is in the next answer.
    more = [make_order(datetime.now(UTC), 9999, [("Pizza Margherita", 3)])]
    asyncio.run(save_orders(database_url, more))
    status, again = get(f"{worker.url}/api/dashboard/minute")
    if datetime.fromisoformat(again["period_start"]) == minute:
        assert again["orders"] == len(stored) + 1 and again["top_dish"] == "Pizza Margherita"
        assert as_figures(again) == in_database(database_url, minute)


def bills_of_this_minute() -> tuple[list, list]:
    """Whole bills (discounts, service charge, delivery fees, tips) placed now, two taken back."""
    now = datetime.now(UTC)
    orders = [OrderGenerator(seed=31 + n, whole_bills=True).order(now) for n in range(12)]
    cancelled, refunded = orders[0], orders[1]
    events = [OrderEvent(kind="cancellation", event_id=str(uuid.uuid4()), order_id=cancelled.order_id,
                         created_at=now, reason="teste"),
              OrderEvent(kind="refund", event_id=str(uuid.uuid4()), order_id=refunded.order_id,
                         created_at=now, reason="teste", lines=(1,),
                         amount=min(refunded.items[0].net, refunded.total))]
    return orders, events


def test_the_minute_under_way_has_the_final_reports_bill_figures(worker: WorkerProcess, database_url: str):
    worker.start()
    for _ in range(ATTEMPTS):
        orders, events = bills_of_this_minute()
        asyncio.run(store(database_url, orders, events))
        status, body = get(f"{worker.url}/api/dashboard/minute")
        assert status == 200, body
        minute = orders[0].created_at.replace(second=0, microsecond=0)
        if datetime.fromisoformat(body["period_start"]) == minute and body["orders"] == len(orders):
            break
    else:
        pytest.fail(f"the minute closed before each of {ATTEMPTS} reads")
    params = {"zone": ZONE, "shift": timedelta(0)}
    [expected] = [row[4:] for row in query(database_url, EXPECTED_FIGURES, params)
                  if row[:3] == ("minute", minute, "")]
    names = ("avg_ticket", *BILL_FIGURES)
    assert tuple(Decimal(str(body[name])) for name in names) == tuple(expected[2:])
    assert Decimal(body["cancellations"]) > 0 and Decimal(body["refunds"]) > 0
    assert Decimal(body["net_revenue"]) < Decimal(body["net_sales"]) + Decimal(body["delivery_fees"]) \
        + Decimal(body["service_charge_revenue"])
