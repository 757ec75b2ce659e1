"""``GET /health``: whether Kafka and PostgreSQL are reachable."""

import asyncio

from faust import web

from restaurant_app.database import DatabaseUnavailable
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers
from restaurant_app.replica import replica_status
from restaurant_app.worker import app, database, reports_database, settings


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
    """200 when both are reachable, 503 otherwise, with each one's status."""
    kafka, postgres = await asyncio.gather(kafka_status(), database_status())
    healthy = kafka["ok"] and postgres["ok"]
    body = {"status": "ok" if healthy else "unavailable", "kafka": kafka, "database": postgres}
    if reports_database is not database:
        body["replica"] = await replica_status(database, reports_database)
    return view.json(body, status=200 if healthy else 503)
