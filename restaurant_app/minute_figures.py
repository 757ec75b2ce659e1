"""A minute's report computed by PostgreSQL from its stored orders, as Spark computes it.

The report job publishes each closed minute this way as soon as its grace is over, before Spark
computes the run's hours, days and insights (``spark_reports.store``, ``ReportStore.close_minutes``),
so that a minute's final report does not wait for Spark; Spark's publish of the same run replaces
the rows with its own, which a test keeps equal (tests/test_report_figures.py). The figures are
those of docs/reports.md, "Report figures".

``MINUTE_SALES`` and ``MINUTE_DISHES`` take ``{minutes}``, a query of ``(period_start,
period_end)`` rows, and ``%(store)s``: one store's rows (``''``: the chain's) or, if NULL, every
store's and the chain's. Their columns are those of Spark's staged rows (``report_staging``).
"""

from restaurant_app.report_tables import SALES_BREAKDOWNS

TAKEN_BACK = """LEFT JOIN LATERAL (
    SELECT sum(revenue) FILTER (WHERE kind = 'cancellation') AS cancelled,
           sum(revenue) FILTER (WHERE kind = 'refund') AS refunded
    FROM order_events e WHERE e.order_id = o.order_id
) e ON true"""
"""What the cancellations and refunds of the order ``o`` took back of its revenue (``e``), in its
window whenever they came (docs/reports.md), as the report job reads it for Spark too."""

# Each order of the minutes, with its lines added up and its cancellations and refunds, counted
# for its store and for the chain (store_id ''): one index range of orders per minute, each
# order's lines and events by key, as Spark reads them (spark_reports.store, SPARK_ORDER_LINES).
_ORDERS = """
WITH o AS MATERIALIZED (
    SELECT m.period_start, m.period_end, w.store_id, o.order_id, o.created_at, o.store_id AS order_store,
           o.customer_id, o.channel, o.payment_method, o.total, o.discount, o.service_charge,
           o.service_charge_is_revenue, o.delivery_fee, o.tip, o.payments, l.items, l.gross,
           l.line_discounts, coalesce(e.cancelled, 0) AS cancelled, coalesce(e.refunded, 0) AS refunded
    FROM ({minutes}) m
    CROSS JOIN LATERAL (
        SELECT * FROM orders o WHERE o.created_at >= m.period_start AND o.created_at < m.period_end OFFSET 0
    ) o
    CROSS JOIN LATERAL (
        SELECT sum(i.quantity) AS items, sum(i.unit_price * i.quantity) AS gross,
               sum(i.discount) AS line_discounts
        FROM order_items i WHERE i.order_id = o.order_id AND i.order_created_at = o.created_at
    ) l
    {taken_back}
    CROSS JOIN LATERAL (VALUES (o.store_id), ('')) AS w (store_id)
    WHERE %(store)s::text IS NULL OR w.store_id = %(store)s
)""".replace("{taken_back}", TAKEN_BACK)

# The dishes of each minute and store, ranked as Spark ranks them: by quantity, then by name in
# byte order (COLLATE "C", as Spark compares strings); a dish's revenue is its lines after their
# own discounts.
_DISHES = """
dishes AS (
    SELECT o.period_start, o.store_id, i.dish, sum(i.quantity) AS quantity,
           sum(i.unit_price * i.quantity - i.discount)::numeric(24,2) AS revenue,
           row_number() OVER (PARTITION BY o.period_start, o.store_id
                              ORDER BY sum(i.quantity) DESC, i.dish COLLATE "C") AS rank
    FROM o JOIN order_items i ON i.order_id = o.order_id AND i.order_created_at = o.created_at
    GROUP BY o.period_start, o.store_id, i.dish
)"""

MINUTE_DISHES = _ORDERS + "," + _DISHES + """
SELECT 'minute' AS granularity, period_start, store_id, dish, quantity, revenue, rank FROM dishes
"""

_BREAKDOWN_SUMS = ",\n".join(
    f"coalesce(jsonb_object_agg(key, amount) FILTER (WHERE name = '{name}'), '{{}}') AS {name}"
    for name in SALES_BREAKDOWNS)

# An order's total by channel, by payment method and by store; and what each method paid: a
# version 2 order's payments, a version 1 order's total by its payment_method.
MINUTE_SALES = _ORDERS + "," + _DISHES + f""",
entries AS (
    SELECT o.period_start, o.store_id, b.name, b.key, sum(b.amount)::numeric(24,2) AS amount
    FROM o CROSS JOIN LATERAL (
        VALUES ('revenue_by_channel', o.channel, o.total), ('revenue_by_payment', o.payment_method, o.total),
               ('revenue_by_store', o.order_store, o.total)
        UNION ALL SELECT 'payments_by_method', o.payment_method, o.total WHERE o.payments IS NULL
        UNION ALL SELECT 'payments_by_method', p ->> 'method', (p ->> 'amount')::numeric
                  FROM jsonb_array_elements(o.payments) AS p
    ) AS b (name, key, amount)
    GROUP BY 1, 2, 3, 4
), breakdowns AS (
    SELECT period_start, store_id, {_BREAKDOWN_SUMS}
    FROM entries GROUP BY period_start, store_id
), totals AS (
    SELECT period_start, period_end, store_id, count(*) AS orders, sum(items)::bigint AS items_sold,
           sum(total)::numeric(24,2) AS gross_revenue, count(DISTINCT customer_id) AS unique_customers,
           coalesce(sum(total) FILTER (WHERE customer_id IS NOT NULL), 0)::numeric(24,2)
               AS identified_revenue,
           sum(gross)::numeric(24,2) AS gross_sales,
           sum(line_discounts + discount)::numeric(24,2) AS discounts,
           sum(service_charge)::numeric(24,2) AS service_charge,
           coalesce(sum(service_charge) FILTER (WHERE service_charge_is_revenue), 0)::numeric(24,2)
               AS service_charge_revenue,
           sum(delivery_fee)::numeric(24,2) AS delivery_fees, sum(tip)::numeric(24,2) AS tips,
           sum(cancelled)::numeric(24,2) AS cancellations, sum(refunded)::numeric(24,2) AS refunds
    FROM o GROUP BY period_start, period_end, store_id
)
SELECT 'minute' AS granularity, t.period_start, t.store_id, t.period_end, t.orders, t.items_sold,
       t.gross_revenue, round(t.gross_revenue / t.orders, 2)::numeric(24,2) AS avg_ticket,
       t.unique_customers,
       round(t.identified_revenue / nullif(t.unique_customers, 0), 2)::numeric(24,2)
           AS avg_spend_per_customer,
       d.dish AS top_dish, d.quantity AS top_dish_quantity, b.revenue_by_channel, b.revenue_by_payment,
       t.identified_revenue, b.revenue_by_store, t.gross_sales, t.discounts,
       (t.gross_sales - t.discounts)::numeric(24,2) AS net_sales, t.service_charge,
       t.service_charge_revenue, t.delivery_fees, t.tips, t.cancellations, t.refunds,
       (t.gross_sales - t.discounts + t.service_charge_revenue + t.delivery_fees - t.cancellations
        - t.refunds)::numeric(24,2) AS net_revenue,
       b.payments_by_method
FROM totals t
JOIN dishes d ON d.period_start = t.period_start AND d.store_id = t.store_id AND d.rank = 1
JOIN breakdowns b ON b.period_start = t.period_start AND b.store_id = t.store_id
"""
