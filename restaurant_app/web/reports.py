"""``GET /reports/latest`` and ``GET /reports``: the report tables as JSON, with their queries."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from faust import web

from restaurant_app.database import DatabaseUnavailable
from restaurant_app.worker import app, database, reports_database, settings

GRANULARITIES = ("minute", "hour", "day")
SALES_COLUMNS = """
granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity, revenue_by_channel,
revenue_by_payment, computed_at
"""

LATEST_SALES = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = %s ORDER BY period_start DESC LIMIT 1
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
"""

MAX_REPORT_ROWS = 10_000
PERIOD_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}
READY_TIMEOUT_SECONDS = 5.0


class BadRequest(ValueError):
    """A query parameter is missing or wrong; the message says which and why."""


def parse_moment(name: str, raw: str | None) -> datetime:
    """An ISO 8601 timestamp; without a UTC offset it is read in the restaurant's time zone."""
    if not raw:
        raise BadRequest(f"'{name}' is required: an ISO 8601 timestamp such as 2026-11-29T14:00:00-03:00")
    text = raw.strip()
    if "T" in text:
        text = text.replace(" ", "+")  # an unescaped '+' in a URL arrives as a space
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{name}' is not an ISO 8601 timestamp: {raw!r:.60}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(settings.restaurant_timezone))
    return moment


def report_range(query: Mapping[str, str]) -> tuple[str, datetime, datetime]:
    """Check the ``from``, ``to`` and ``granularity`` parameters of ``GET /reports``."""
    granularity = query.get("granularity") or "minute"
    if granularity not in PERIOD_SECONDS:
        raise BadRequest(f"'granularity' must be one of {', '.join(PERIOD_SECONDS)}, got {granularity!r:.30}")
    start, end = parse_moment("from", query.get("from")), parse_moment("to", query.get("to"))
    if start >= end:
        raise BadRequest("'from' must be earlier than 'to'")
    if (end - start).total_seconds() / PERIOD_SECONDS[granularity] > MAX_REPORT_ROWS:
        raise BadRequest(
            f"that range holds more than {MAX_REPORT_ROWS} {granularity} windows; ask for a shorter"
            " range or a coarser granularity"
        )
    return granularity, start, end


def plain(value: Any) -> Any:
    """Rows from PostgreSQL in JSON terms: amounts as numbers, timestamps in ISO 8601."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def report_data(view: web.View, read: Callable[[], Awaitable[Any]]) -> web.Response:
    """Answer with what ``read`` returns, or 503 if PostgreSQL cannot be reached."""
    try:
        await asyncio.wait_for(database.ready(), READY_TIMEOUT_SECONDS)
        await reports_database.ready()
        return view.json(plain(await read()))
    except (DatabaseUnavailable, TimeoutError) as exc:
        return view.json({"error": f"the database is unavailable: {exc}"}, status=503)


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
    latest["insights"] = await reports_database.fetch_all(LATEST_INSIGHTS)
    runs = await reports_database.fetch_all(LAST_RUN)
    latest["last_run"] = runs[0] if runs else None
    return latest


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
        return {
            "granularity": granularity, "from": start, "to": end,
            "reports": await reports_database.fetch_all(SALES_BETWEEN, (granularity, start, end)),
            "insights": await reports_database.fetch_all(INSIGHTS_BETWEEN, (start, end)),
        }

    return await report_data(view, read)
