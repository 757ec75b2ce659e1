"""``GET /reports/latest`` and ``GET /reports``: the report tables as JSON, with their queries."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from faust import web
from multidict import MultiMapping

from restaurant_app.database import DatabaseUnavailable, describe
from restaurant_app.web.rows import json_ready
from restaurant_app.worker import app, database, reports_database, settings

log = logging.getLogger(__name__)

GRANULARITIES = ("minute", "hour", "day")


def amounts_as_text(column: str) -> str:
    """A breakdown (jsonb ``{key: amount}``) whose amounts are exact decimal strings, as elsewhere."""
    return (f"(SELECT coalesce(jsonb_object_agg(key, (value #>> '{{}}')::numeric(16, 2)::text), '{{}}')"
            f" FROM jsonb_each({column})) AS {column}")


SALES_COLUMNS = f"""
granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
{amounts_as_text("revenue_by_channel")}, {amounts_as_text("revenue_by_payment")},
{amounts_as_text("revenue_by_store")}, computed_at, final
"""

LATEST_SALES = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = %s AND (final OR granularity <> 'minute') ORDER BY period_start DESC LIMIT 1
"""

MINUTE_UNDER_WAY = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = 'minute' AND NOT final
  AND period_start > coalesce((SELECT max(period_start) FROM report_sales
                               WHERE granularity = 'minute' AND final), '-infinity')
ORDER BY period_start DESC LIMIT 1
"""

DISHES_OF_WINDOW = """
SELECT dish, quantity, revenue, rank FROM report_dishes
WHERE granularity = %s AND period_start = %s ORDER BY rank
"""

LATEST_INSIGHTS = """
SELECT DISTINCT ON (kind, subject) kind, window_start, window_end, subject, message, figures,
       computed_at
FROM report_insights
WHERE window_start >= (SELECT max(window_start) FROM report_insights) - interval '1 hour'
ORDER BY kind, subject, window_start DESC
"""

LAST_RUN = """
SELECT run_id, mode, status, started_at, finished_at, windows_written, orders_read, rows_read, error
FROM report_runs ORDER BY run_id DESC LIMIT 1
"""

SALES_BETWEEN = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = %s AND period_start >= %s AND period_start < %s ORDER BY period_start
"""

INSIGHTS_BETWEEN = """
SELECT kind, window_start, window_end, subject, message, figures, computed_at
FROM report_insights
WHERE window_start >= %s AND window_start < %s ORDER BY window_start, kind, subject
LIMIT %s
"""

MAX_REPORT_ROWS = 10_000
MAX_INSIGHT_ROWS = 10_000
MAX_PARAMETER_LENGTH = 64
PERIOD_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}
READY_TIMEOUT_SECONDS = 5.0
EXAMPLE_MOMENT = "2026-11-29T14:00:00-03:00"


class BadRequest(ValueError):
    """A query parameter is missing or wrong; the message says which and why."""


def parameter(query: MultiMapping[str], name: str) -> str | None:
    """The one value of parameter ``name``, if given; at most ``MAX_PARAMETER_LENGTH`` characters."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given more than once")
    if values and len(values[0]) > MAX_PARAMETER_LENGTH:
        raise BadRequest(f"'{name}' is longer than {MAX_PARAMETER_LENGTH} characters")
    return values[0] if values else None


def parse_moment(name: str, raw: str | None) -> datetime:
    """An ISO 8601 timestamp; without a UTC offset it is read in the restaurant's time zone."""
    if not raw:
        raise BadRequest(f"'{name}' is required: an ISO 8601 timestamp such as {EXAMPLE_MOMENT}")
    text = raw.strip()
    if "T" in text:
        text = text.replace(" ", "+")  # an unescaped '+' in a URL arrives as a space
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{name}' is not an ISO 8601 timestamp such as {EXAMPLE_MOMENT}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(settings.restaurant_timezone))
    return moment


def report_range(query: MultiMapping[str]) -> tuple[str, datetime, datetime]:
    """Check the ``from``, ``to`` and ``granularity`` parameters of ``GET /reports``."""
    granularity = parameter(query, "granularity") or "minute"
    if granularity not in PERIOD_SECONDS:
        raise BadRequest(f"'granularity' must be one of {', '.join(PERIOD_SECONDS)}")
    start = parse_moment("from", parameter(query, "from"))
    end = parse_moment("to", parameter(query, "to"))
    if start >= end:
        raise BadRequest("'from' must be earlier than 'to'")
    if (end - start).total_seconds() / PERIOD_SECONDS[granularity] > MAX_REPORT_ROWS:
        raise BadRequest(
            f"that range holds more than {MAX_REPORT_ROWS} {granularity} windows; ask for a shorter"
            " range or a coarser granularity"
        )
    return granularity, start, end


async def report_data(view: web.View, read: Callable[[], Awaitable[Any]]) -> web.Response:
    """Answer with what ``read`` returns, or 503 if PostgreSQL cannot be reached."""
    try:
        await asyncio.wait_for(database.ready(), READY_TIMEOUT_SECONDS)
        await reports_database.ready()
        return view.json(json_ready(await read()))
    except (DatabaseUnavailable, TimeoutError) as exc:
        reason = str(exc) or f"not ready within {READY_TIMEOUT_SECONDS:.0f} s"
        log.warning("Reports: PostgreSQL at %s is unreachable (%s).", describe(database.url), reason)
        return view.json({"error": "PostgreSQL is unreachable"}, status=503)


async def latest_reports_data() -> dict[str, Any]:
    """The newest minute, hour and day reports with their dish rankings, the latest insights
    and the last run of the report job."""
    latest: dict[str, Any] = {}
    for granularity in GRANULARITIES:
        rows = await reports_database.fetch_all(LATEST_SALES, (granularity,))
        if rows:
            rows[0]["dishes"] = await reports_database.fetch_all(
                DISHES_OF_WINDOW, (granularity, rows[0]["period_start"])
            )
        latest[granularity] = rows[0] if rows else None
    under_way = await reports_database.fetch_all(MINUTE_UNDER_WAY)
    latest["minute_under_way"] = under_way[0] if under_way else None
    latest["insights"] = await reports_database.fetch_all(LATEST_INSIGHTS)
    runs = await reports_database.fetch_all(LAST_RUN)
    latest["last_run"] = runs[0] if runs else None
    return latest


async def insights_between(
    start: datetime, end: datetime, limit: int = MAX_INSIGHT_ROWS
) -> tuple[list[dict], bool]:
    """The first ``limit`` insights of windows starting in [start, end), and whether there were more."""
    rows = await reports_database.fetch_all(INSIGHTS_BETWEEN, (start, end, limit + 1))
    return rows[:limit], len(rows) > limit


@app.page("/reports/latest")
async def latest_reports(view: web.View, request: web.Request) -> web.Response:
    """The newest minute, hour and day reports, the latest insights and the last job run."""
    return await report_data(view, latest_reports_data)


@app.page("/reports")
async def reports(view: web.View, request: web.Request) -> web.Response:
    """Reports and insights for ``from`` <= window start < ``to``; 400 with a reason on bad parameters."""
    try:
        granularity, start, end = report_range(request.query)
    except BadRequest as exc:
        return view.json({"error": str(exc)}, status=400)

    async def read() -> dict[str, Any]:
        insights, truncated = await insights_between(start, end)
        return {
            "granularity": granularity, "from": start, "to": end,
            "reports": await reports_database.fetch_all(SALES_BETWEEN, (granularity, start, end)),
            "insights": insights, "insights_truncated": truncated,
        }

    return await report_data(view, read)
