"""The dashboard's history: a day, a week or a month from the report tables, compared with the
period before and, for a day, with the same weekday of the week before; and the same as CSV.

Periods follow the restaurant's calendar: a week starts on Monday. Every figure has the
definition it has elsewhere: the average ticket is revenue ÷ orders. The figures are the whole
chain's, or one store's with ``store``.
"""

from datetime import date, datetime, timedelta
from typing import Any

from faust import web

from restaurant_app.business_day import date_start, day_start
from restaurant_app.web.dashboard import STORE, ZONE, from_database, language_of
from restaurant_app.web.endpoint import CSV_NUMBERS, BadParameter, Choice, answer, csv_download, csv_text
from restaurant_app.web.language import LANGUAGES
from restaurant_app.web.texts import TEXTS
from restaurant_app.worker import app, settings, web_database

PERIODS = ("day", "week", "month")
TOP_DISHES = 8
EARLIEST = date(2000, 1, 1)
UNAVAILABLE = "PostgreSQL is unavailable; the history comes back by itself when it returns."

# A day's unique customers are its report's; the chain's week's and month's are kept by the report
# job (report_period_customers); a store's, and a period no run has counted since migration 026, are
# counted from its days.
PERIOD_FIGURES = """
SELECT count(*) AS days_with_sales,
       coalesce(sum(orders), 0)::bigint AS orders,
       coalesce(sum(items_sold), 0)::bigint AS items,
       coalesce(sum(gross_revenue), 0)::numeric(24,2) AS revenue,
       coalesce(round(sum(gross_revenue) / nullif(sum(orders), 0), 2), 0)::numeric(24,2) AS avg_ticket,
       coalesce((SELECT unique_customers FROM report_period_customers
                 WHERE granularity = %(period)s AND period_start = %(starts)s AND %(store)s = ''),
                CASE WHEN %(period)s = 'day' THEN sum(unique_customers)::bigint END,
                (SELECT count(DISTINCT customer_id) FROM report_customers
                 WHERE granularity = 'day' AND period_start >= %(starts)s AND period_start < %(ends)s
                   AND store_id = %(store)s))
           AS unique_customers
FROM report_sales
WHERE granularity = 'day' AND period_start >= %(starts)s AND period_start < %(ends)s
  AND store_id = %(store)s
"""

PERIOD_BY_PAYMENT = """
SELECT p.key AS name, sum((p.value #>> '{}')::numeric)::numeric(24,2) AS revenue
FROM report_sales s, jsonb_each(s.revenue_by_payment) p
WHERE s.granularity = 'day' AND s.period_start >= %(starts)s AND s.period_start < %(ends)s
  AND s.store_id = %(store)s
GROUP BY p.key ORDER BY revenue DESC, name
"""

PERIOD_DISHES = """
SELECT dish, sum(quantity)::bigint AS quantity, sum(revenue)::numeric(24,2) AS revenue
FROM report_dishes
WHERE granularity = 'day' AND period_start >= %(starts)s AND period_start < %(ends)s
  AND store_id = %(store)s
GROUP BY dish ORDER BY quantity DESC, dish LIMIT %(top)s
"""

DAYS_OF_PERIOD = """
SELECT period_start AS day, orders, items_sold AS items, gross_revenue AS revenue, avg_ticket,
       unique_customers
FROM report_sales
WHERE granularity = 'day' AND period_start >= %(starts)s AND period_start < %(ends)s
  AND store_id = %(store)s
ORDER BY period_start
"""


class DayParameter:
    """A calendar day, ``YYYY-MM-DD``; today's business day on the restaurant's clock when absent."""

    def read(self, name: str, raw: str | None) -> date:
        if not raw:
            return day_start(datetime.now(ZONE), ZONE, settings.business_day_starts_hour).date()
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise BadParameter(f"'{name}' must be a day such as 2026-11-29") from None
        if day < EARLIEST:
            raise BadParameter(f"'{name}' must be {EARLIEST.isoformat()} or later")
        return day


SPEC = {"period": Choice(PERIODS, "day"), "date": DayParameter(), "lang": Choice(LANGUAGES), **STORE}
CSV_SPEC = {**SPEC, "numbers": Choice(CSV_NUMBERS, "br")}


def period_of(period: str, day: date) -> tuple[date, date]:
    """The first day of the ``period`` holding ``day``, and the first day after it."""
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


def previous_of(period: str, day: date) -> date:
    """A day in the period before the one holding ``day``."""
    return period_of(period, day)[0] - timedelta(days=1)


def midnight(day: date) -> datetime:
    """When the business day of ``day`` starts (at BUSINESS_DAY_STARTS; at midnight by default)."""
    return date_start(day, ZONE, settings.business_day_starts_hour)


async def figures_of(period: str, day: date, store: str) -> dict[str, Any]:
    """The period's figures, its revenue by payment method and its top dishes."""
    first, after = period_of(period, day)
    bounds = {"starts": midnight(first), "ends": midnight(after), "top": TOP_DISHES, "period": period,
              "store": store}
    figures = (await web_database.fetch_all(PERIOD_FIGURES, bounds))[0]
    return {
        "first_day": first.isoformat(), "last_day": (after - timedelta(days=1)).isoformat(), **figures,
        "by_payment": await web_database.fetch_all(PERIOD_BY_PAYMENT, bounds),
        "dishes": await web_database.fetch_all(PERIOD_DISHES, bounds),
    }


async def history_body(period: str, day: date, lang: str, store: str) -> dict[str, Any]:
    """The period holding ``day``, the one before, and for a day the same weekday a week before."""
    first, after = period_of(period, day)
    bounds = {"starts": midnight(first), "ends": midnight(after), "store": store}
    return {
        "period": period, "lang": lang, "timezone": str(ZONE), "source": "report_sales", "store": store,
        "current": await figures_of(period, day, store),
        "previous": await figures_of(period, previous_of(period, day), store),
        "same_weekday_last_week": (await figures_of("day", day - timedelta(days=7), store)
                                   if period == "day" else None),
        "days": await web_database.fetch_all(DAYS_OF_PERIOD, bounds),
    }


@app.page("/api/dashboard/history")
async def history(view: web.View, request: web.Request) -> web.Response:
    """A day, week or month of the report tables, with its comparisons."""

    async def read(**params: Any) -> dict[str, Any]:
        return await history_body(params["period"], params["date"], params["lang"], params["store"])

    return await answer(view, request, SPEC, lambda params: from_database(read, params),
                        unavailable=UNAVAILABLE, zone=ZONE, check=language_of(request))


CSV_COLUMNS = ("day", "orders", "items", "revenue", "avg_ticket", "unique_customers")


def as_csv(body: dict[str, Any], numbers: str) -> str:
    """The period's days and its total, one row each, in ``numbers`` (``br`` or ``intl``)."""
    words = TEXTS[body["lang"]]
    days = [[row["day"].astimezone(ZONE).strftime("%d/%m/%Y"), *(row[column] for column in CSV_COLUMNS[1:])]
            for row in body["days"]]
    total = [words["history.total"], *(body["current"][column] for column in CSV_COLUMNS[1:])]
    return csv_text([words[f"history.column.{column}"] for column in CSV_COLUMNS], [*days, total], numbers)


@app.page("/api/dashboard/history.csv")
async def history_csv(view: web.View, request: web.Request) -> web.Response:
    """The history's days and total as CSV, for a spreadsheet or an accountant."""

    async def read(**params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return await history_body(params["period"], params["date"], params["lang"], params["store"]), params

    def respond(read_back: tuple[dict[str, Any], dict[str, Any]]) -> web.Response:
        body, params = read_back
        store = f"-{params['store']}" if params["store"] else ""
        name = f"vendas{store}-{params['period']}-{params['date'].isoformat()}.csv"
        return csv_download(view, name, as_csv(body, params["numbers"]))

    return await answer(view, request, CSV_SPEC, lambda params: from_database(read, params),
                        unavailable=UNAVAILABLE, check=language_of(request), respond=respond)
