"""The report tables' columns, listed once: the job's publish step and the web's reads are made from them.

A new report figure is a name here, a column in a migration (the report table, and the staging
table with its view) and its computation in ``spark_reports/aggregations.py``.
"""

CHAIN_STORE = ""
"""The ``store_id`` of the whole chain's report rows (every store's orders); a store's id is never
empty. Each report row belongs to one store or to the chain (migration 018)."""

SALES_KEY = ("granularity", "period_start", "store_id")
BILL_FIGURES = (
    "gross_sales", "discounts", "net_sales", "service_charge", "service_charge_revenue", "delivery_fees",
    "tips", "cancellations", "refunds", "net_revenue",
)
"""The amounts of whole bills (docs/reports.md, "Report figures"), each added up from minutes to days."""
SALES_FIGURES = (
    "period_end", "orders", "items_sold", "gross_revenue", "avg_ticket", "unique_customers",
    "avg_spend_per_customer", "top_dish", "top_dish_quantity", "revenue_by_channel", "revenue_by_payment",
    "identified_revenue", "revenue_by_store", *BILL_FIGURES, "payments_by_method",
)
SALES_BREAKDOWNS = ("revenue_by_channel", "revenue_by_payment", "revenue_by_store", "payments_by_method")
"""Figures stored as jsonb ``{key: amount}``."""
SALES_STAMPS = ("computed_at", "final", "corrected_at")
"""Set by the publish step, not computed by Spark."""

DISH_FIGURES = ("dish", "quantity", "revenue", "rank")
DISH_COLUMNS = ("granularity", "period_start", "store_id", *DISH_FIGURES)
INSIGHT_COLUMNS = ("store_id", "kind", "window_start", "window_end", "subject", "figures")
"""What the job stores of an insight; its sentence is written by the web, in the page's language
(rows stored before migration 013 also have an English ``message``)."""


def listed(columns: tuple[str, ...], prefix: str = "") -> str:
    """``a, b, c``, each with ``prefix`` (such as ``st.``) in front."""
    return ", ".join(prefix + column for column in columns)
