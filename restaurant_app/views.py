"""Our HTTP endpoints on the Faust web server, beside Faust's own ``/stats/``."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from faust import web

from restaurant_app.app import app, database
from restaurant_app.database import DatabaseUnavailable
from restaurant_app.kafka import KafkaUnavailable, count_brokers
from restaurant_app.settings import settings


async def kafka_status() -> dict[str, object]:
    try:
        return {"ok": True, "brokers": await count_brokers(settings.bootstrap_servers)}
    except KafkaUnavailable as exc:
        return {"ok": False, "error": str(exc)}


async def database_status() -> dict[str, object]:
    try:
        await database.ping()
        return {"ok": True}
    except DatabaseUnavailable as exc:
        return {"ok": False, "error": str(exc)}


@app.page("/health")
async def health(view: web.View, request: web.Request) -> web.Response:
    """Whether Kafka and PostgreSQL are reachable: 200 when both are, 503 otherwise."""
    kafka, postgres = await asyncio.gather(kafka_status(), database_status())
    healthy = kafka["ok"] and postgres["ok"]
    body = {"status": "ok" if healthy else "unavailable", "kafka": kafka, "database": postgres}
    return view.json(body, status=200 if healthy else 503)


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
        return view.json(plain(await read()))
    except (DatabaseUnavailable, TimeoutError) as exc:
        return view.json({"error": f"the database is unavailable: {exc}"}, status=503)


@app.page("/reports/latest")
async def latest_reports(view: web.View, request: web.Request) -> web.Response:
    """The newest minute, hour and day reports, the latest insights and the last job run."""
    return await report_data(view, database.latest_reports)


@app.page("/reports")
async def reports(view: web.View, request: web.Request) -> web.Response:
    """Reports and insights for ``from`` <= window start < ``to``; 400 with a reason on bad parameters."""
    try:
        granularity, start, end = report_range(request.query)
    except BadRequest as exc:
        return view.json({"error": str(exc)}, status=400)

    async def read() -> dict[str, Any]:
        found = await database.reports_between(granularity, start, end)
        return {"granularity": granularity, "from": start, "to": end, **found}

    return await report_data(view, read)
