"""The dashboard's endpoints refuse bad parameters with 400 and a reason, with no service running."""

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import strategies as st
from multidict import MultiDict

from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.web import dashboard, figures, history, pages, reports
from restaurant_app.web.endpoint import BadParameter, Choice, Moment, Whole, parse
from restaurant_app.web.history import DayParameter
from restaurant_app.worker import app

HOURS = {"hours": Whole(2, 1, 24)}
DAY = {"orders": 2, "items": 5, "revenue": Decimal("1234.50"), "avg_ticket": Decimal("617.25"),
       "unique_customers": 2}
CSV_BODY = {"days": [{"day": datetime(2026, 12, 1, 3, tzinfo=UTC), **DAY}], "current": DAY}
# The Faust app has one aiohttp application, and it can only ever run on one event loop.
on_one_loop = pytest.mark.asyncio(loop_scope="module")


def test_a_missing_parameter_takes_its_default():
    assert parse({}, HOURS) == {"hours": 2}


def test_parameters_within_bounds_are_read():
    spec = {"hours": Whole(1, 1, 168), "limit": Whole(20, 1, 200)}
    assert parse({"hours": "168", "limit": "1"}, spec) == {"hours": 168, "limit": 1}


@pytest.mark.parametrize("raw", ["0", "25", "", "2.5", "-1", "+3", " 2", "1_0", "٣", "two", "9" * 20])
def test_anything_but_a_whole_number_in_range_is_refused(raw: str):
    with pytest.raises(BadParameter, match="'hours' must be a whole number from 1 to 24"):
        parse({"hours": raw}, HOURS)


def test_an_unknown_parameter_is_refused_with_what_the_endpoint_takes():
    with pytest.raises(BadParameter, match="unknown parameter 'hour'; this endpoint takes hours"):
        parse({"hour": "2"}, HOURS)
    with pytest.raises(BadParameter, match="this endpoint takes no parameters"):
        parse({"x": "1"}, {})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[TestClient]:
    """The worker's real web application (routes and views), served without Kafka or PostgreSQL."""
    assert pages.dashboard_page and dashboard.summary and reports.reports and history.history  # routes
    async with TestClient(TestServer(app.web.web_app, host="127.0.0.1")) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "reason"), [
    ("/api/dashboard/minutes?hours=0", "'hours' must be a whole number from 1 to 24, got '0'"),
    ("/api/dashboard/minutes?hours=abc", "'hours' must be a whole number from 1 to 24, got 'abc'"),
    ("/api/dashboard/minutes?hour=2", "unknown parameter 'hour'; this endpoint takes hours, store"),
    ("/api/dashboard/dishes?limit=51", "'limit' must be a whole number from 1 to 50, got '51'"),
    ("/api/dashboard/insights?limit=", "'limit' must be a whole number from 1 to 50, got ''"),
    ("/api/dashboard/rejections?hours=169", "'hours' must be a whole number from 1 to 168, got '169'"),
    ("/api/dashboard/rejections?hours=1&limit=0", "'limit' must be a whole number from 1 to 200, got '0'"),
    ("/api/dashboard/summary?day=yesterday", "unknown parameter 'day'; this endpoint takes store"),
    ("/api/dashboard/stores?store=centro", "unknown parameter 'store'; this endpoint takes no parameters"),
    ("/api/dashboard/health?verbose=1", "unknown parameter 'verbose'; this endpoint takes no parameters"),
    ("/api/dashboard/minutes?hours=1&hours=2", "'hours' is given more than once"),
    ("/api/dashboard/dishes?limit=" + "1" * 65, "'limit' is longer than 64 characters"),
    ("/reports?from=2026-11-20T14:00:00Z&to=2026-11-20T13:00:00Z", "'from' must be earlier than 'to'"),
    ("/reports?from=2026-11-20T14:00:00Z&to=2026-11-20T15:00:00Z&hours=2",
     "unknown parameter 'hours'; this endpoint takes granularity, from, to, lang, store"),
    ("/reports/latest?lang=fr", "'lang' must be one of pt-BR, en"),
    ("/api/dashboard/history?period=year", "'period' must be one of day, week, month"),
    ("/api/dashboard/history?date=2026-02-30", "'date' must be a day such as 2026-11-29"),
    ("/api/dashboard/history.csv?numbers=us", "'numbers' must be one of br, intl"),
    ("/reports.csv?from=2026-11-20T14:00:00Z&to=2026-11-20T15:00:00Z&numbers=us",
     "'numbers' must be one of br, intl"),
    ("/reports.csv?from=2026-11-20T14:00:00Z&to=2026-11-20T13:00:00Z", "'from' must be earlier than 'to'"),
    *((f"{path}?store={store}", f"'store' must be a store's id (1 to 32 lowercase letters, digits, '-' or"
                                f" '_'), or empty for the whole chain; got {shown}")
      for path in ("/api/dashboard/summary", "/api/dashboard/minutes", "/api/dashboard/dishes",
                   "/api/dashboard/insights", "/api/dashboard/history", "/api/dashboard/history.csv",
                   "/reports/latest")
      for store, shown in (("Centro", "'Centro'"), ("-x", "'-x'"), ("a" * 33, repr("a" * 33)),
                           ("lo%20ja", "'lo ja'"))),
])
@on_one_loop
async def test_bad_parameters_get_400_with_the_reason(client: TestClient, path: str, reason: str):
    response = await client.get(path)
    assert response.status == 400
    assert await response.json() == {"error": reason}


@on_one_loop
async def test_postgres_away_gives_503_with_a_plain_message(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    nowhere = Database(f"postgresql://secret_user@127.0.0.1:{free_port()}/nowhere")
    monkeypatch.setattr(dashboard, "database", nowhere)
    monkeypatch.setattr(dashboard, "web_database", nowhere)
    monkeypatch.setattr(figures, "web_database", nowhere)
    monkeypatch.setattr(dashboard, "ANSWER_WITHIN_SECONDS", 1.0)
    response = await client.get("/api/dashboard/summary")
    assert response.status == 503
    body = await response.text()
    assert "PostgreSQL is unavailable" in body
    assert "127.0.0.1" not in body and "secret_user" not in body and "nowhere" not in body


@on_one_loop
async def test_the_page_and_its_files_are_served_and_nothing_else(client: TestClient):
    page = await client.get("/")
    assert page.status == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<canvas id="minutes-chart"' in await page.text()
    assert (await client.get("/static/dashboard/dashboard.js")).content_type == "text/javascript"
    assert (await client.get("/static/vendor/chart.umd.min.js")).status == 200
    assert (await client.get("/static/vendor/chart.js")).status == 404
    assert (await client.get("/static/dashboard/index.html")).status == 404


@on_one_loop
async def test_the_page_speaks_portuguese_unless_english_is_asked_for(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    english_browser = {"Accept-Language": "en-US,en;q=0.9"}
    page = await client.get("/", headers=english_browser)
    body = await page.text()
    assert page.headers["Content-Language"] == "pt-BR"
    assert '<html lang="pt-BR">' in body and "<h2>Ticket médio</h2>" in body
    assert "{{" not in body and "Average ticket" not in body.split('id="texts"')[0]
    english = await (await client.get("/?lang=en")).text()
    assert '<html lang="en">' in english and "<h2>Average ticket</h2>" in english
    auto = dataclasses.replace(dashboard.settings, dashboard_language="auto")
    monkeypatch.setattr(dashboard, "settings", auto)
    assert (await client.get("/", headers=english_browser)).headers["Content-Language"] == "en"
    portuguese_browser = {"Accept-Language": "pt-BR"}
    assert (await client.get("/", headers=portuguese_browser)).headers["Content-Language"] == "pt-BR"
    refused = await client.get("/?lang=fr")
    assert refused.status == 400 and "'lang' must be one of pt-BR, en" in await refused.text()


@on_one_loop
async def test_the_history_csv_is_a_download_in_the_numbers_asked_for(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    async def without_database(read: Callable[..., Awaitable[Any]], params: dict[str, Any]) -> Any:
        """The fetch, without waiting for a PostgreSQL this test does not have."""
        return await read(**params)

    async def one_day(period: str, day: date, lang: str, store: str) -> dict:
        return {**CSV_BODY, "lang": lang, "store": store}

    monkeypatch.setattr(history, "from_database", without_database)
    monkeypatch.setattr(history, "history_body", one_day)
    response = await client.get("/api/dashboard/history.csv?period=week&date=2026-12-01&numbers=intl&lang=en")
    assert response.status == 200 and response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="vendas-week-2026-12-01.csv"'
    assert (await response.text()).lstrip("\ufeff").splitlines() == [
        "Day,Orders,Items sold,Revenue (R$),Average ticket (R$),Unique customers",
        "01/12/2026,2,5,1234.50,617.25,2",
        "Total,2,5,1234.50,617.25,2",
    ]
    one_store = await client.get("/api/dashboard/history.csv?period=day&date=2026-12-01&store=centro")
    assert one_store.status == 200
    disposition = one_store.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="vendas-centro-day-2026-12-01.csv"'


ANY_SPEC = {"hours": Whole(2, 1, 24), "lang": Choice(("pt-BR", "en")), "from": Moment(UTC),
            "day": DayParameter()}


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.lists(st.tuples(st.sampled_from([*ANY_SPEC, "other"]), st.text(max_size=100)),
                           max_size=6))
def test_any_query_is_read_or_refused_with_a_short_reason(pairs: list[tuple[str, str]]):
    try:
        params = parse(MultiDict(pairs), ANY_SPEC)
    except BadParameter as refused:
        assert len(str(refused)) < 120
        return
    assert set(params) == set(ANY_SPEC)
    assert 1 <= params["hours"] <= 24 and params["lang"] in (None, "pt-BR", "en")
