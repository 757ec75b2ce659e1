"""Report amounts sized for a busy chain: a window's revenue past numeric(16,2)'s largest value fits."""

import asyncio
from decimal import Decimal

import pytest

from restaurant_app.database import Database
from restaurant_app.validation import MAX_TOTAL
from tests.services import execute, query

pytestmark = pytest.mark.integration

# A million orders at the largest total allowed in one minute: past numeric(16,2), within numeric(24,2).
BUSY_MINUTE = MAX_TOTAL * 1_000_000


def test_a_window_of_a_million_largest_orders_is_stored_and_read_through_the_views(database_url: str):
    asyncio.run(Database(database_url).migrate())
    assert Decimal("99999999999999.99") < BUSY_MINUTE
    execute(database_url, """
        INSERT INTO report_staging (staged, granularity, period_start, period_end, orders, items_sold,
                                    gross_revenue, avg_ticket, unique_customers, avg_spend_per_customer,
                                    identified_revenue, top_dish, top_dish_quantity)
        VALUES ('sales', 'minute', '2026-11-20 12:00Z', '2026-11-20 12:01Z', 1000000, 1000000,
                %(amount)s, %(each)s, 1, %(amount)s, %(amount)s, 'Feijoada', 1000000)
    """, {"amount": BUSY_MINUTE, "each": MAX_TOTAL})
    assert query(database_url, "SELECT gross_revenue FROM report_staging_sales") == [(BUSY_MINUTE,)]
    execute(database_url, """
        INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
                                  avg_ticket, unique_customers, avg_spend_per_customer, identified_revenue,
                                  top_dish, top_dish_quantity, revenue_by_channel, revenue_by_payment,
                                  revenue_by_store, computed_at, final, gross_sales, net_sales, net_revenue,
                                  payments_by_method)
        SELECT granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
               unique_customers, avg_spend_per_customer, identified_revenue, top_dish, top_dish_quantity,
               '{}', '{}', '{}', now(), true, gross_revenue, gross_revenue, gross_revenue, '{}'
        FROM report_staging_sales
    """)
    execute(database_url, "INSERT INTO report_dishes (granularity, period_start, dish, quantity, revenue,"
                          " rank) VALUES ('minute', '2026-11-20 12:00Z', 'Feijoada', 1000000, %s, 1)",
            (BUSY_MINUTE,))
    assert query(database_url, "SELECT total_vendas, ticket_medio FROM relatorio_vendas") == [
        (BUSY_MINUTE, MAX_TOTAL)]
    assert query(database_url, "SELECT revenue FROM report_dishes") == [(BUSY_MINUTE,)]
