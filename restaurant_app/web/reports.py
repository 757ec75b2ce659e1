"""``GET /reports/latest`` and ``GET /reports``: the report tables as JSON, with their queries.

Each answers for the whole chain, or for one store with ``store`` (a store with orders stored, else 400).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from faust import web
from multidict import MultiMapping

from restaurant_app.database import DatabaseUnavailable, describe
from restaurant_app.report_tables import (
    DISH_FIGURES,
    INSIGHT_COLUMNS,
    SALES_BREAKDOWNS,
    SALES_FIGURES,
    SALES_KEY,
    SALES_STAMPS,
    listed,
)
from restaurant_app.web.dashboard import language_of
from restaurant_app.web.endpoint import (
    CSV_NUMBERS,
    BadParameter,
    Choice,
    Fetch,
    Moment,
    Store,
    answer,
    csv_download,
    csv_text,
    parse,
)
from restaurant_app.web.figures import SKIPPED_COUNT
from restaurant_app.web.language import LANGUAGES, moment, with_messages
from restaurant_app.web.stores import checked_store
from restaurant_app.worker import app, database, reports_database, settings

log = logging.getLogger(__name__)

GRANULARITIES = ("minute", "hour", "day")


def amounts_as_text(column: str) -> str:
    """A breakdown (jsonb ``{key: amount}``) whose amounts are exact decimal strings, as elsewhere."""
    return (f"(SELECT coalesce(jsonb_object_agg(key, (value #>> '{{}}')::numeric(24, 2)::text), '{{}}')"
            f" FROM jsonb_each({column})) AS {column}")


SALES_COLUMNS = ", ".join(
    amounts_as_text(c) if c in SALES_BREAKDOWNS else c for c in SALES_KEY + SALES_FIGURES + SALES_STAMPS
)

LATEST_SALES = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = %(granularity)s AND store_id = %(store)s AND (final OR granularity <> 'minute')
ORDER BY period_start DESC LIMIT 1
"""

LATEST_PROVISIONAL_MINUTE = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = 'minute' AND store_id = %(store)s AND NOT final
  AND period_start > coalesce((SELECT max(period_start) FROM report_sales
                               WHERE granularity = 'minute' AND store_id = %(store)s AND final),
                              '-infinity')
ORDER BY period_start DESC LIMIT 1
"""

DISHES_OF_WINDOW = f"""
SELECT {listed(DISH_FIGURES)} FROM report_dishes
WHERE granularity = %(granularity)s AND period_start = %(start)s AND store_id = %(store)s
ORDER BY rank, dish LIMIT %(limit)s
"""

LATEST_INSIGHTS = f"""
SELECT DISTINCT ON (kind, subject) {listed(INSIGHT_COLUMNS)}, message, computed_at
FROM report_insights
WHERE store_id = %(store)s
  AND window_start >= (SELECT max(window_start) FROM report_insights WHERE store_id = %(store)s)
                      - interval '1 hour'
ORDER BY kind, subject, window_start DESC
LIMIT %(limit)s
"""

LAST_RUN = """
SELECT run_id, mode, status, started_at, finished_at, windows_written, orders_read, rows_read, error
FROM report_runs ORDER BY run_id DESC LIMIT 1
"""

SALES_BETWEEN = f"""
SELECT {SALES_COLUMNS} FROM report_sales
WHERE granularity = %(granularity)s AND store_id = %(store)s
  AND period_start >= %(start)s AND period_start < %(end)s
ORDER BY period_start
"""

INSIGHTS_BETWEEN = f"""
SELECT {listed(INSIGHT_COLUMNS)}, message, computed_at
FROM report_insights
WHERE store_id = %(store)s AND window_start >= %(start)s AND window_start < %(end)s
ORDER BY window_start, kind, subject
LIMIT %(limit)s
"""

# Minute windows that may miss orders a run skipped after repeated failures, until a run
# recomputes them (spark_reports/ledger.py); the hours and days that hold them may miss them too.
SKIPPED_BETWEEN = """
SELECT period_start FROM report_skipped_windows
WHERE period_start >= %s AND period_start < %s ORDER BY period_start LIMIT %s
"""

MAX_REPORT_ROWS = 10_000
MAX_INSIGHT_ROWS = 10_000
MAX_LATEST_DISHES = 100
"""Most dishes ``/reports/latest`` gives of each window (the best ranked)."""
MAX_LATEST_INSIGHTS = 500
PERIOD_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}
READY_TIMEOUT_SECONDS = 5.0
UNREACHABLE = "PostgreSQL is unreachable"
ZONE = ZoneInfo(settings.restaurant_timezone)
LANG = {"lang": Choice(LANGUAGES)}
STORE = {"store": Store()}
RANGE = {"granularity": Choice(tuple(PERIOD_SECONDS), "minute"), "from": Moment(ZONE), "to": Moment(ZONE),
         **LANG, **STORE}


def report_range(query: MultiMapping[str]) -> tuple[str, datetime, datetime]:
    """Check the ``from``, ``to`` and ``granularity`` parameters of ``GET /reports``."""
    checked = checked_range(parse(query, RANGE))
    return checked["granularity"], checked["start"], checked["end"]


def checked_range(params: dict[str, Any]) -> dict[str, Any]:
    """``granularity``, ``start`` and ``end`` if ``from`` < ``to`` and the range holds at most
    ``MAX_REPORT_ROWS`` windows."""
    granularity, start, end = params.pop("granularity"), params.pop("from"), params.pop("to")
    if start >= end:
        raise BadParameter("'from' must be earlier than 'to'")
    if (end - start).total_seconds() / PERIOD_SECONDS[granularity] > MAX_REPORT_ROWS:
        raise BadParameter(
            f"that range holds more than {MAX_REPORT_ROWS} {granularity} windows; ask for a shorter"
            " range or a coarser granularity"
        )
    return {**params, "granularity": granularity, "start": start, "end": end}


def from_reports(read: Callable[..., Awaitable[Any]]) -> Fetch:
    """A fetch that waits for PostgreSQL (and the replica) first, and logs when it cannot; the
    ``store`` asked for must have reports."""

    async def fetch(params: dict[str, Any]) -> Any:
        try:
            await asyncio.wait_for(database.ready(), READY_TIMEOUT_SECONDS)
            await reports_database.ready()
            await checked_store(reports_database, params["store"])
            return await read(**params)
        except (DatabaseUnavailable, TimeoutError) as exc:
            reason = str(exc) or f"not ready within {READY_TIMEOUT_SECONDS:.0f} s"
            log.warning("Reports: PostgreSQL at %s is unreachable (%s).", describe(database.url), reason)
            raise

    return fetch


async def latest_reports_data(lang: str, store: str) -> dict[str, Any]:
    """The newest minute, hour and day reports of ``store`` (or the chain) with their dish
    rankings, the latest insights (written in ``lang``) and the last run of the report job."""
    latest: dict[str, Any] = {"store": store}
    for granularity in GRANULARITIES:
        rows = await reports_database.fetch_all(LATEST_SALES, {"granularity": granularity, "store": store})
        if rows:
            dishes = await reports_database.fetch_all(DISHES_OF_WINDOW, {
                "granularity": granularity, "start": rows[0]["period_start"], "store": store,
                "limit": MAX_LATEST_DISHES + 1})
            rows[0]["dishes"] = dishes[:MAX_LATEST_DISHES]
            rows[0]["dishes_truncated"] = len(dishes) > MAX_LATEST_DISHES
        latest[granularity] = rows[0] if rows else None
    under_way = await reports_database.fetch_all(LATEST_PROVISIONAL_MINUTE, {"store": store})
    latest["minute_under_way"] = under_way[0] if under_way else None
    insights = await reports_database.fetch_all(LATEST_INSIGHTS,
                                                {"store": store, "limit": MAX_LATEST_INSIGHTS + 1})
    latest["insights"] = with_messages(insights[:MAX_LATEST_INSIGHTS], lang, ZONE)
    latest["insights_truncated"] = len(insights) > MAX_LATEST_INSIGHTS
    runs = await reports_database.fetch_all(LAST_RUN)
    latest["last_run"] = runs[0] if runs else None
    latest["skipped_windows"] = (await reports_database.fetch_all(SKIPPED_COUNT))[0]
    return latest


async def insights_between(
    start: datetime, end: datetime, store: str, limit: int = MAX_INSIGHT_ROWS
) -> tuple[list[dict], bool]:
    """The first ``limit`` insights of ``store`` (or the chain) of windows starting in [start, end),
    and whether there were more."""
    rows = await reports_database.fetch_all(INSIGHTS_BETWEEN, {"start": start, "end": end, "store": store,
                                                               "limit": limit + 1})
    return rows[:limit], len(rows) > limit


@app.page("/reports/latest")
async def latest_reports(view: web.View, request: web.Request) -> web.Response:
    """The newest minute, hour and day reports, the latest insights and the last job run."""
    fetch = from_reports(latest_reports_data)
    return await answer(view, request, {**LANG, **STORE}, fetch, unavailable=UNREACHABLE,
                        check=language_of(request))


def sales_between(granularity: str, start: datetime, end: datetime, store: str) -> Awaitable[list[dict]]:
    return reports_database.fetch_all(SALES_BETWEEN, {"granularity": granularity, "start": start, "end": end,
                                                      "store": store})


async def reports_between(
    granularity: str, start: datetime, end: datetime, lang: str, store: str
) -> dict[str, Any]:
    """Reports of ``granularity`` and insights (in ``lang``) of ``store`` (or the chain) for
    ``start`` <= window start < ``end``."""
    insights, truncated = await insights_between(start, end, store)
    return {
        "granularity": granularity, "from": start, "to": end, "store": store,
        "reports": await sales_between(granularity, start, end, store),
        "insights": with_messages(insights, lang, ZONE), "insights_truncated": truncated,
        "skipped_windows": [row["period_start"] for row in await reports_database.fetch_all(
            SKIPPED_BETWEEN, (start, end, MAX_REPORT_ROWS))],
    }


@app.page("/reports")
async def reports(view: web.View, request: web.Request) -> web.Response:
    """Reports and insights for ``from`` <= window start < ``to``; 400 with a reason on bad parameters."""
    with_language = language_of(request)
    return await answer(view, request, RANGE, from_reports(reports_between), unavailable=UNREACHABLE,
                        check=lambda params: with_language(checked_range(params)))


CSV_COLUMNS = ("store", "period_start", *(c for c in SALES_FIGURES if c not in SALES_BREAKDOWNS), "final")
CSV_CHAIN = "(chain)"
"""What the ``store`` column says of the whole chain's rows: no store's id has parentheses."""
CSV_RANGE = {**{name: kind for name, kind in RANGE.items() if name != "lang"},
             "numbers": Choice(CSV_NUMBERS, "br")}


def reports_csv_text(rows: list[dict[str, Any]], numbers: str) -> str:
    """Report rows as CSV, each naming its store, moments as ``dd/mm/aaaa HH:MM`` on the restaurant's
    clock."""
    def cell(row: dict[str, Any], column: str) -> Any:
        if column == "store":
            return row["store_id"] or CSV_CHAIN
        value = row[column]
        return moment(value, ZONE) if isinstance(value, datetime) else value

    return csv_text(CSV_COLUMNS, ([cell(row, column) for column in CSV_COLUMNS] for row in rows), numbers)


def reports_csv_name(store: str) -> str:
    """The download's file name, with the store's id when it is one store's."""
    return f"relatorio-vendas-{store}.csv" if store else "relatorio-vendas.csv"


@app.page("/reports.csv")
async def reports_csv(view: web.View, request: web.Request) -> web.Response:
    """The sales reports for ``from`` <= window start < ``to`` as a CSV download."""

    async def read(granularity: str, start: datetime, end: datetime, numbers: str,
                   store: str) -> tuple[list, str, str]:
        return await sales_between(granularity, start, end, store), numbers, store

    def respond(read_back: tuple[list[dict[str, Any]], str, str]) -> web.Response:
        rows, numbers, store = read_back
        return csv_download(view, reports_csv_name(store), reports_csv_text(rows, numbers))

    return await answer(view, request, CSV_RANGE, from_reports(read), unavailable=UNREACHABLE,
                        check=checked_range, respond=respond)
