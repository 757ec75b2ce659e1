"""The dashboard's JSON endpoints under ``/api/dashboard/``.

Bad parameters get 400 with the reason; while PostgreSQL is away, 503 with a plain message.
The figures are the whole chain's, or one store's with ``store`` (``/api/dashboard/stores``).
Money is an exact decimal string and every moment is ISO 8601 on the restaurant's clock.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from faust import web

from restaurant_app.database import DatabaseUnavailable
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.web import figures
from restaurant_app.web.endpoint import (
    NO_STORE,
    BadParameter,
    Choice,
    Parameter,
    Store,
    Whole,
    answer,
    error,
    parse,
)
from restaurant_app.web.health import every_part, overall
from restaurant_app.web.lag import consumer_lag
from restaurant_app.web.language import LANGUAGES, choose, with_messages
from restaurant_app.web.rows import json_ready
from restaurant_app.web.stores import checked_store, known_stores
from restaurant_app.worker import app, database, settings, web_database

ANSWER_WITHIN_SECONDS = 4.0
UNAVAILABLE = "PostgreSQL is unavailable; the figures come back by themselves when it returns."
ZONE = ZoneInfo(settings.restaurant_timezone)
STORE = {"store": Store()}

Read = Callable[..., Awaitable[dict[str, Any]]]


async def from_database(read: Read, params: Mapping[str, Any]) -> dict[str, Any]:
    """What ``read`` returns; DatabaseUnavailable or TimeoutError if PostgreSQL does not answer in time.

    A ``store`` among the parameters must be known (BadParameter otherwise).
    """

    async def ready_then_read() -> dict[str, Any]:
        await database.ready()  # migrated first: the web's own role may not migrate
        await web_database.ready()
        if "store" in params:
            await checked_store(web_database, params["store"])
        return await read(**params)

    return await asyncio.wait_for(ready_then_read(), ANSWER_WITHIN_SECONDS)


async def answer_from_database(
    view: web.View, request: web.Request, spec: Mapping[str, Parameter], read: Read
) -> web.Response:
    """The endpoint idiom with the dashboard's reading of PostgreSQL and its clock."""
    return await answer(view, request, spec, partial(from_database, read), unavailable=UNAVAILABLE,
                        zone=ZONE)


def page_language(request: web.Request, asked: str | None) -> str:
    """``asked`` if given, else the setting's language (the browser's, with ``auto``)."""
    return choose(settings.dashboard_language, request.headers.get("Accept-Language"), asked)


def language_of(request: web.Request) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A parameter check that settles ``lang``: as asked, else as the setting (or the browser) says."""
    return lambda params: {**params, "lang": page_language(request, params.get("lang"))}


async def summary_body(store: str) -> dict[str, Any]:
    today = await figures.today(settings.restaurant_timezone, store, settings.business_day_starts_hour)
    return {"timezone": settings.restaurant_timezone, "source": "orders", "store": store, **today}


async def minutes_body(hours: int, store: str) -> dict[str, Any]:
    return {"hours": hours, "source": "orders", "store": store,
            "minutes": await figures.minutes(hours, store)}


async def minute_body(store: str) -> dict[str, Any]:
    return {"source": "orders", "provisional": True, "store": store, **await figures.minute_under_way(store)}


async def dishes_body(limit: int, store: str) -> dict[str, Any]:
    windows = await figures.current_dishes(settings.restaurant_timezone, limit, store,
                                           settings.business_day_starts_hour)
    return {"source": "report_dishes", "store": store, **windows}


async def insights_body(limit: int, lang: str, store: str) -> dict[str, Any]:
    """The latest insights, each ``message`` written in ``lang`` from its figures."""
    rows = await figures.latest_insights(limit, store)
    return {"source": "report_insights", "lang": lang, "store": store,
            "insights": with_messages(rows, lang, ZONE)}


async def stores_body() -> dict[str, Any]:
    return {"source": "stores", "chain": CHAIN_STORE, "stores": await known_stores(web_database)}


async def rejections_body(hours: int, limit: int) -> dict[str, Any]:
    return {"hours": hours, **await figures.recent_rejections(hours, limit)}


@app.page("/api/dashboard/summary")
async def summary(view: web.View, request: web.Request) -> web.Response:
    """Today so far against the same time yesterday, and today's revenue by channel and payment."""
    return await answer_from_database(view, request, STORE, summary_body)


@app.page("/api/dashboard/minutes")
async def minutes(view: web.View, request: web.Request) -> web.Response:
    """Revenue and orders per minute over the last ``hours``; the minute under way is provisional."""
    return await answer_from_database(view, request, {"hours": Whole(2, 1, 24), **STORE}, minutes_body)


@app.page("/api/dashboard/minute")
async def minute(view: web.View, request: web.Request) -> web.Response:
    """The minute under way as its report will count it, from its stored orders: provisional."""
    return await answer_from_database(view, request, STORE, minute_body)


@app.page("/api/dashboard/dishes")
async def dishes(view: web.View, request: web.Request) -> web.Response:
    """The top ``limit`` dishes of the hour and of the day under way, from the Spark reports."""
    return await answer_from_database(view, request, {"limit": Whole(8, 1, 50), **STORE}, dishes_body)


@app.page("/api/dashboard/insights")
async def insights(view: web.View, request: web.Request) -> web.Response:
    """The latest ``limit`` insights of the Spark reports, newest window first, in ``lang``."""
    spec = {"limit": Whole(6, 1, 50), "lang": Choice(LANGUAGES), **STORE}

    async def read(limit: int, lang: str | None, store: str) -> dict[str, Any]:
        return await insights_body(limit, page_language(request, lang), store)

    return await answer_from_database(view, request, spec, read)


@app.page("/api/dashboard/stores")
async def stores(view: web.View, request: web.Request) -> web.Response:
    """The stores with orders stored, for the ``store`` parameter here and in ``/reports``; "" is the
    chain."""
    return await answer_from_database(view, request, {}, stores_body)


@app.page("/api/dashboard/rejections")
async def rejections(view: web.View, request: web.Request) -> web.Response:
    """The messages refused in the last ``hours``, newest first, with their reasons."""
    spec = {"hours": Whole(1, 1, 168), "limit": Whole(20, 1, 200)}
    return await answer_from_database(view, request, spec, rejections_body)


async def kafka_status() -> dict[str, Any]:
    try:
        brokers = await count_brokers(settings.bootstrap_servers, security=settings.kafka_security)
        return {"ok": True, "brokers": brokers}
    except KafkaUnavailable:
        return {"ok": False, "error": "no Kafka broker answered"}


async def pipeline_status() -> dict[str, Any] | None:
    """Ingest, rejections and the last report run; None while PostgreSQL is away."""
    try:
        return await from_database(figures.pipeline, {})
    except (DatabaseUnavailable, TimeoutError):
        return None


@app.page("/api/dashboard/health")
async def health(view: web.View, request: web.Request) -> web.Response:
    """Kafka, PostgreSQL, ingest rate, consumer lag, rejections and the last report run.

    503 while PostgreSQL is away (Kafka and the consumer lag are still told).
    """
    try:
        parse(request.query, {})
    except BadParameter as exc:
        return error(view, str(exc), 400)
    kafka, pipeline, parts = await asyncio.gather(kafka_status(), pipeline_status(), every_part())
    database_status = {"ok": True} if pipeline else {"ok": False, "error": UNAVAILABLE}
    status, _, down = overall(parts)
    body = {
        "status": status,
        "down": down,
        "kafka": kafka,
        "database": database_status,
        "consumer_lag": consumer_lag(settings.orders_topic),
        "pipeline": pipeline,
    }
    return view.json(json_ready(body, ZONE), status=200 if pipeline else 503, headers=NO_STORE)
