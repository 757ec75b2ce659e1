"""The dashboard's queries of recent rejections read an index, not every rejection ever recorded."""

import asyncio

import psycopg
import pytest

from restaurant_app.database import Database
from restaurant_app.web.figures import RECENT_REJECTIONS

pytestmark = pytest.mark.integration


def index_names(url: str, sql: str, params: tuple) -> set[str]:
    """The indexes the plan of ``sql`` reads, with sequential scans ruled out where avoidable."""
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off")
        document = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    found: set[str] = set()

    def walk(node: dict) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(document[0]["Plan"])
    return found


def test_the_last_hours_rejections_are_found_by_time(database_url: str):
    asyncio.run(Database(database_url).migrate())
    assert "rejected_orders_rejected_at_idx" in index_names(database_url, RECENT_REJECTIONS, (1, 50))
