"""The dashboard in a real headless Chromium, against a real worker, real orders and real reports.

The tests run in order on one page: the figures, the charts, the pipeline's health, then an
outage of PostgreSQL and the page's recovery.
"""

import csv
import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Page

from infra.postgres import PostgresServer
from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port
from restaurant_app.models import Order, OrderEvent
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.settings import PROJECT_ROOT, Settings
from restaurant_app.traffic import OrderGenerator
from restaurant_app.web.language import insight_message
from spark_reports.ledger import REPORT_LOCK_ID
from tests.browser import PageLog, chromium_page
from tests.conftest import service_home
from tests.services import produce, query, run_report_job, unique_names, wait_until

pytestmark = pytest.mark.integration

SETTINGS = Settings.from_env()
ZONE = ZoneInfo(SETTINGS.restaurant_timezone)
README_SCREENSHOT = PROJECT_ROOT / "docs" / "dashboard.png"
REVENUE_BLUE = (31, 111, 235)
DISH_GREEN = (47, 158, 114)
INVALID_MESSAGES = [b"not json at all", b'{"order_id": "x", "items": []}']
UNAVAILABLE_503 = "the server responded with a status of 503"
BRAZILIAN_MONEY = re.compile(r"R\$ \d{1,3}(\.\d{3})*,\d{2}")
PHONE_WIDTH = 360
TAP_TARGET = 44
"""The least width and height of a control a finger taps at a phone's width (WCAG 2.5.5), in CSS px."""
PHONE_CONTROLS = ("store", "other-language", "rejections-button", "history-date", "history-period",
                  "history-numbers", "history-csv")
"""The page's controls, in the order the keyboard's Tab reaches them."""
CHARTS = ("minutes-chart", "dishes-hour-chart", "dishes-day-chart")
PHONE_SCREENSHOT = PROJECT_ROOT / "docs" / "dashboard-phone.png"
AXE = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"


@dataclass
class Dashboard:
    """A worker with known orders and fresh reports, its PostgreSQL, and a browser page on it."""

    worker: WorkerProcess
    postgres: PostgresServer
    page: Page
    log: PageLog

    @property
    def url(self) -> str:
        return self.worker.env["DATABASE_URL"]


def known_orders(now: datetime) -> list[Order]:
    """Every 3 minutes over the last 90, two in the last seconds, and a dozen at this time yesterday,
    from two stores of a chain: whole bills (discounts, service charge, delivery fees, tips)."""
    generator = OrderGenerator(seed=42, timezone_name=SETTINGS.restaurant_timezone, whole_bills=True)
    moments = [now - timedelta(minutes=3 * n, seconds=20) for n in range(30)]
    moments += [now - timedelta(seconds=4), now - timedelta(seconds=2)]
    moments += [now - timedelta(days=1, minutes=10 + 7 * n) for n in range(12)]
    return [generator.order(moment, ("main", "loja-centro")[n % 2]) for n, moment in enumerate(moments)]


def known_events(orders: list[Order]) -> list[OrderEvent]:
    """A cancellation of the first order and a refund of the second's first line, today."""
    first, second = orders[0], orders[1]
    return [OrderEvent(kind="cancellation", event_id="00000000-0000-4000-8000-000000000001",
                       order_id=first.order_id, created_at=first.created_at, reason="cliente desistiu"),
            OrderEvent(kind="refund", event_id="00000000-0000-4000-8000-000000000002",
                       order_id=second.order_id, created_at=second.created_at, reason="item errado",
                       amount=min(second.items[0].net, second.total), lines=(1,))]


def publish(dashboard_worker: WorkerProcess, stack: ScratchStack, orders: list[Order]) -> None:
    messages = [(o.order_id.encode(), o.dumps()) for o in orders]
    messages += [(e.order_id.encode(), e.dumps()) for e in known_events(orders)]  # after their orders
    messages += [(None, raw) for raw in INVALID_MESSAGES]
    produce(stack.kafka.bootstrap_servers, dashboard_worker.env["ORDERS_TOPIC"], messages)


def stored(url: str) -> tuple[int, int, int]:
    return query(url, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM rejected_orders),"
                      " (SELECT count(*) FROM order_events)")[0]


def quiet_worker(stack: ScratchStack, database_url: str, folder: Path) -> WorkerProcess:
    """A worker on its own topics whose generator and report timer stay quiet during the tests."""
    return WorkerProcess({
        **unique_names(),
        "KAFKA_BROKER": stack.kafka.bootstrap_servers,
        "DATABASE_URL": database_url,
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600",
        "TOPIC_PARTITIONS": "2",
        "DATA_DIR": str(folder / "data"),
    }, folder / "worker.log")


@pytest.fixture(scope="module")
def dashboard(stack: ScratchStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The page open on a worker that stored the known orders, once the report job has run.

    PostgreSQL is a server of its own, since a test stops it.
    """
    home = service_home()
    postgres = PostgresServer(home, free_port())
    postgres.start()
    postgres.create_database("restaurant")
    url = postgres.url("restaurant")
    worker = quiet_worker(stack, url, tmp_path_factory.mktemp("dashboard"))
    try:
        worker.start()
        orders = known_orders(datetime.now(UTC))
        publish(worker, stack, orders)
        wait_until(lambda: stored(url) == (len(orders), len(INVALID_MESSAGES), len(known_events(orders))),
                   message="the worker never stored the test's orders")
        assert run_report_job(url)["exit_code"] == 0
        with chromium_page(worker.url) as (page, log):
            page.goto(worker.url + "/")
            yield Dashboard(worker, postgres, page, log)
    finally:
        worker.stop()
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


# --- What the database says, queried independently of the app --------------------------------


def brl(amount: Decimal) -> str:
    """Money as a Brazilian reads it: R$ 1.234,56."""
    return "R$ " + f"{amount:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def whole(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def since_midnight() -> tuple[datetime, datetime]:
    now = datetime.now(ZONE)
    return now.replace(hour=0, minute=0, second=0, microsecond=0), now


def today_in_database(url: str, store: str = CHAIN_STORE) -> dict[str, str]:
    """Today's figures of ``store`` (or the chain), as the page should show them."""
    start, end = since_midnight()
    orders, revenue, customers = query(
        url, "SELECT count(*), coalesce(sum(total), 0), count(DISTINCT customer_id) FROM orders"
             " WHERE created_at >= %s AND created_at <= %s AND %s IN ('', store_id)", (start, end, store))[0]
    items = query(url, "SELECT coalesce(sum(quantity), 0) FROM order_items JOIN orders USING (order_id)"
                       " WHERE created_at >= %s AND created_at <= %s AND %s IN ('', store_id)",
                  (start, end, store))[0][0]
    ticket = (revenue / orders).quantize(Decimal("0.01"), ROUND_HALF_UP) if orders else Decimal(0)
    gross, net = query(url, NET_AND_GROSS, (start, end, store))[0]
    return {"kpi-revenue": brl(revenue), "kpi-orders": whole(orders), "kpi-items": whole(items),
            "kpi-ticket": brl(ticket), "kpi-customers": whole(customers), "kpi-gross": brl(gross),
            "kpi-net": brl(net)}


# The definitions in docs/reports.md: net sales + service charge that is revenue + delivery fees, less what
# the cancellations and refunds of those orders took back.
NET_AND_GROSS = """
WITH today AS (SELECT * FROM orders WHERE created_at >= %s AND created_at <= %s AND %s IN ('', store_id)),
lines AS (SELECT order_id, sum(unit_price * quantity) AS gross, sum(discount) AS discounts
          FROM order_items GROUP BY order_id)
SELECT coalesce(sum(l.gross), 0),
       coalesce(sum(l.gross - l.discounts - t.discount + t.delivery_fee
                     + CASE WHEN t.service_charge_is_revenue THEN t.service_charge ELSE 0 END), 0)
       - (SELECT coalesce(sum(e.revenue), 0) FROM order_events e JOIN today USING (order_id))
FROM today t JOIN lines l USING (order_id)
"""


def yesterday_revenue_in_database(url: str) -> str:
    start, end = (moment - timedelta(days=1) for moment in since_midnight())
    return brl(query(url, "SELECT coalesce(sum(total), 0) FROM orders WHERE created_at >= %s"
                          " AND created_at <= %s", (start, end))[0][0])


TODAY_BY = {
    column: f"SELECT {column}, sum(total) FROM orders WHERE created_at >= %s AND created_at <= %s GROUP BY 1"
    for column in ("channel", "payment_method", "store_id")
}


def today_by_in_database(url: str, column: str) -> dict[str, str]:
    return {name: brl(total) for name, total in query(url, TODAY_BY[column], since_midnight())}


def report_dishes_in_database(url: str, granularity: str, store: str = CHAIN_STORE) -> list[tuple[str, int]]:
    """The Spark report's top 8 dishes of the hour or day under way, by rank."""
    start = datetime.now(ZONE).replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        start = start.replace(hour=0)
    return query(url, "SELECT dish, quantity FROM report_dishes WHERE granularity = %s"
                      " AND period_start = %s AND store_id = %s AND rank <= 8 ORDER BY rank",
                 (granularity, start, store))


def ingest_in_database(url: str) -> str:
    last_minute, last_five = query(
        url, "SELECT count(*) FILTER (WHERE ingested_at > now() - interval '1 minute'),"
             " count(*) FILTER (WHERE ingested_at > now() - interval '5 minutes') FROM orders")[0]
    per_minute = f"{last_five / 5:.1f}".replace(".", ",").removesuffix(",0")
    return f"{whole(last_minute)} pedidos no último minuto ({per_minute}/min em 5 min)"


# --- What the page shows ------------------------------------------------------------------------


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text().replace("\xa0", " ").strip()


def kpis_on_page(page: Page) -> dict[str, str]:
    return {card: text(page, f"#{card} .value") for card in
            ("kpi-revenue", "kpi-orders", "kpi-items", "kpi-ticket", "kpi-customers", "kpi-gross", "kpi-net")}


def breakdown_on_page(page: Page, list_id: str) -> dict[str, str]:
    return page.eval_on_selector_all(
        f"#{list_id} li[data-name]",
        "items => Object.fromEntries(items.map(i => "
        "[i.dataset.name, i.querySelector('.amount').textContent.replace(/\\u00a0/g, ' ')]))")


def chart_data(page: Page, canvas_id: str) -> dict:
    return page.evaluate(
        """id => { const chart = Chart.getChart(id);
                  return { labels: chart.data.labels, series: chart.data.datasets.map(d => d.data) }; }""",
        canvas_id)


def colours_along_tallest_bar(page: Page, canvas_id: str, settled_only: bool = False) -> list[list[int]]:
    """The canvas's pixels at ten points along its longest bar, from base to tip; with
    ``settled_only``, leaving out the last bar (the minute under way, drawn paler)."""
    return page.evaluate(
        """([id, settledOnly]) => {
            const chart = Chart.getChart(id);
            const all = chart.getDatasetMeta(0).data;
            const bars = settledOnly ? all.slice(0, -1) : all;
            const horizontal = chart.options.indexAxis === 'y';
            const length = b => Math.abs((horizontal ? b.x : b.y) - b.base);
            const bar = bars.reduce((a, b) => (length(b) > length(a) ? b : a));
            const ratio = chart.currentDevicePixelRatio;
            const context = chart.canvas.getContext('2d');
            return Array.from({ length: 10 }, (_, i) => {
                const along = bar.base + ((horizontal ? bar.x : bar.y) - bar.base) * (i + 0.5) / 10;
                const [x, y] = horizontal ? [along, bar.y] : [bar.x, along];
                const pixel = context.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1);
                return Array.from(pixel.data);
            });
        }""",
        [canvas_id, settled_only])


def shows(page: Page, selector: str, expected: str) -> None:
    assert text(page, selector) == expected


def same_figures(page: Page, url: str) -> None:
    shown = kpis_on_page(page)
    assert shown == today_in_database(url)
    assert shown["kpi-net"] != shown["kpi-gross"]  # discounts, charges, a cancellation and a refund


def mostly(colours: list[list[int]], rgb: tuple[int, int, int]) -> bool:
    return sum(tuple(c[:3]) == rgb for c in colours) >= 7


def eventually(check: Callable[[], None], timeout: float = 30.0, message: str = "") -> None:
    """Keep checking until ``check`` passes: the page refreshes itself every 5 seconds."""
    failure: list[AssertionError] = []

    def passes() -> bool:
        try:
            check()
        except AssertionError as error:
            failure[:] = [error]
            return False
        return True

    try:
        wait_until(passes, timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{message}: {failure[0] if failure else ''}") from None


# --- The tests, in order ---------------------------------------------------------------------------


def test_today_so_far_equals_the_database(dashboard: Dashboard):
    page, url = dashboard.page, dashboard.url

    def same() -> None:
        same_figures(page, url)
        assert yesterday_revenue_in_database(url) in text(page, "#kpi-revenue .compare")
        assert breakdown_on_page(page, "by-channel") == today_by_in_database(url, "channel")
        assert breakdown_on_page(page, "by-payment") == today_by_in_database(url, "payment_method")
        assert breakdown_on_page(page, "by-store") == today_by_in_database(url, "store_id")

    eventually(same, message="the page's figures never matched the database")
    assert text(page, "#zone") == SETTINGS.restaurant_timezone


def test_the_minutes_chart_draws_every_order_of_the_last_two_hours(dashboard: Dashboard):
    page, url = dashboard.page, dashboard.url
    data = chart_data(page, "minutes-chart")
    revenue, orders = data["series"]
    assert len(data["labels"]) == len(revenue) == len(orders) == 120
    last_two_hours = query(url, "SELECT count(*), sum(total) FROM orders WHERE created_at >="
                                " date_trunc('minute', now()) - interval '119 minutes'")[0]
    assert sum(orders) == last_two_hours[0] == 32
    assert round(Decimal(str(sum(revenue))), 2) == last_two_hours[1]
    assert mostly(colours_along_tallest_bar(page, "minutes-chart", settled_only=True), REVENUE_BLUE)


def test_the_minute_under_way_is_marked_provisional(dashboard: Dashboard):
    flags = dashboard.page.evaluate("""() => {
        const chart = Chart.getChart('minutes-chart');
        const fill = chart.data.datasets[0].backgroundColor;
        return chart.data.labels.map((_, i) => fill({ dataIndex: i }));
    }""")
    assert set(flags[:-1]) == {"#1f6feb"}
    assert flags[-1] == "#b9d3fb"
    assert text(dashboard.page, ".legend") == "minuto em andamento (provisório)"


@pytest.mark.parametrize("granularity", ["hour", "day"])
def test_the_dish_charts_show_the_spark_reports(dashboard: Dashboard, granularity: str):
    page, chart = dashboard.page, f"dishes-{granularity}-chart"
    reported: list[tuple[str, int]] = []

    def same() -> None:
        reported[:] = report_dishes_in_database(dashboard.url, granularity)
        data = chart_data(page, chart)
        assert list(zip(data["labels"], data["series"][0], strict=True)) == reported

    eventually(same, message="the dish chart never showed the report")
    if not reported:  # an hour (or day) that began after the report job ran
        assert "Nenhum relatório Spark" in text(page, f"#dishes-{granularity}-source")
        return
    assert mostly(colours_along_tallest_bar(page, chart), DISH_GREEN)
    assert "calculado às" in text(page, f"#dishes-{granularity}-source")


def insights_in_database(url: str, lang: str, store: str = CHAIN_STORE) -> list[str]:
    """The latest six insights' sentences in ``lang``, from the figures the report job stored."""
    rows = query(url, "SELECT kind, window_start, window_end, figures FROM report_insights"
                      " WHERE store_id = %s ORDER BY window_start DESC, kind, subject LIMIT 6",
                 (store,))
    keys = ("kind", "window_start", "window_end", "figures")
    return [insight_message(dict(zip(keys, row, strict=True)), lang, ZONE) for row in rows]


def test_the_latest_insights_are_written_from_the_reports_figures(dashboard: Dashboard):
    expected = insights_in_database(dashboard.url, "pt-BR")
    assert expected and None not in expected, "the report job wrote no insights"
    shown = dashboard.page.locator("#insights .message").all_inner_texts()
    assert shown == expected
    for sentence in shown:
        assert all(BRAZILIAN_MONEY.fullmatch(amount) for amount in re.findall(r"R\$ [\d.,]*\d", sentence))


def test_pipeline_health(dashboard: Dashboard):
    page = dashboard.page

    def healthy() -> None:
        assert text(page, "#health-kafka").startswith("acessível")
        assert text(page, "#health-database") == "acessível"
        assert text(page, "#health-lag").startswith("0 mensagens")
        assert text(page, "#health-run").startswith("concluída às ")

    eventually(healthy, message="the pipeline never looked healthy")
    eventually(lambda: shows(page, "#health-ingest", ingest_in_database(dashboard.url)),
               message="the ingest rate never matched the database")


def test_a_window_a_run_skipped_shows_until_a_run_fills_it(dashboard: Dashboard):
    page = dashboard.page
    skipped = datetime(2026, 11, 20, 14, 7, tzinfo=UTC)
    with psycopg.connect(dashboard.url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (REPORT_LOCK_ID,))  # no run fills it meanwhile
        try:
            conn.execute("INSERT INTO report_skipped_windows (period_start, run_id)"
                         " SELECT %s, max(run_id) FROM report_runs", (skipped,))
            eventually(lambda: shows(page, "#health-skipped", (
                "1 minuto(s) desde 20/11/2026 11:07 podem estar sem pedidos nos relatórios: uma execução"
                " os pulou após falhas repetidas; serão refeitos")),
                message="the skipped window never showed")
            eventually(lambda: shows(page, "#health-down", "Com problema agora: relatórios"),
                       message="the page never said which part is down")
            conn.execute("DELETE FROM report_skipped_windows WHERE period_start = %s", (skipped,))
            eventually(lambda: (assert_hidden(page, "#health-skipped"), assert_hidden(page, "#health-down")),
                       message="it never went away")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (REPORT_LOCK_ID,))


def assert_hidden(page: Page, selector: str) -> None:
    assert page.locator(selector).is_hidden()


def test_the_rejections_open_with_their_reasons(dashboard: Dashboard):
    page = dashboard.page
    assert text(page, "#rejections-button") == "2 — ver motivos"
    page.click("#rejections-button")
    page.wait_for_selector("#rejections-list li")
    reasons = [row[0] for row in query(dashboard.url, "SELECT reason FROM rejected_orders ORDER BY id DESC")]
    assert page.locator("#rejections-list .reason").all_inner_texts() == reasons
    page.click("#rejections-close")
    assert not page.locator("#rejections-dialog").is_visible()


MONEY_CARDS = ("kpi-revenue", "kpi-ticket", "kpi-gross", "kpi-net")
PORTUGUESE_LABELS = {"#kpi-revenue h2": "Faturamento hoje", "#kpi-gross h2": "Vendas brutas",
                     "#kpi-net h2": "Receita líquida", "#kpi-orders h2": "Pedidos",
                     "#kpi-items h2": "Itens vendidos", "#kpi-ticket h2": "Ticket médio",
                     "#kpi-customers h2": "Clientes únicos", "#health-title": "Saúde do pipeline",
                     "#insights-title": "Últimos insights"}
ENGLISH_LABELS = {"#kpi-revenue h2": "Revenue today", "#kpi-gross h2": "Gross sales",
                  "#kpi-net h2": "Net revenue", "#kpi-orders h2": "Orders",
                  "#kpi-items h2": "Items sold", "#kpi-ticket h2": "Average ticket",
                  "#kpi-customers h2": "Unique customers", "#health-title": "Pipeline health",
                  "#insights-title": "Latest insights"}


def labels_on_page(page: Page, labels: dict[str, str]) -> dict[str, str]:
    return {selector: page.locator(selector).text_content() for selector in labels}


def test_the_page_is_in_portuguese_with_brazilian_money_and_dates(dashboard: Dashboard):
    page = dashboard.page
    assert page.evaluate("document.documentElement.lang") == "pt-BR"
    assert labels_on_page(page, PORTUGUESE_LABELS) == PORTUGUESE_LABELS
    for card in MONEY_CARDS:
        assert BRAZILIAN_MONEY.fullmatch(text(page, f"#{card} .value")), text(page, f"#{card} .value")
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", text(page, "#today-date"))
    assert text(page, "#today-date") == datetime.now(ZONE).strftime("%d/%m/%Y")
    assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d", text(page, "#clock"))
    badges = page.locator("#insights .badge").all_inner_texts()
    assert badges and not {"Top dish", "vs previous hour", "Unusual minute"} & set(badges)


@contextmanager
def another_page(dashboard: Dashboard, path: str, width: int = 1280, height: int = 900,
                 bypass_csp: bool = False) -> Iterator[Page]:
    """One more page of the same browser on ``path``; it must ask nothing elsewhere and raise nothing."""
    page = dashboard.page.context.browser.new_page(viewport={"width": width, "height": height},
                                                   locale="en-US", bypass_csp=bypass_csp)
    log = PageLog(dashboard.worker.url)
    page.on("request", log.on_request)
    page.on("pageerror", lambda error: log.exceptions.append(str(error)))
    try:
        page.goto(dashboard.worker.url + path)
        yield page
    finally:
        page.close()
    assert (log.elsewhere, log.exceptions) == ([], [])


def test_english_is_an_option_with_the_same_figures(dashboard: Dashboard):
    with another_page(dashboard, "/?lang=en") as english:
        assert english.evaluate("document.documentElement.lang") == "en"
        assert labels_on_page(english, ENGLISH_LABELS) == ENGLISH_LABELS
        eventually(lambda: same_figures(english, dashboard.url), message="the English page's figures")
        eventually(lambda: shows(english, "#health-database", "reachable"))
        expected = insights_in_database(dashboard.url, "en")
        assert english.locator("#insights .message").all_inner_texts() == expected
        assert text(english, "#other-language") == "Português"


def test_at_a_phone_s_width_nothing_overflows(dashboard: Dashboard, tmp_path: Path):
    with another_page(dashboard, "/", PHONE_WIDTH, 812) as phone:
        eventually(lambda: same_figures(phone, dashboard.url), message="the phone page's figures")
        widths = phone.evaluate("""() => ({
            page: document.documentElement.scrollWidth,
            widest: Math.max(...[...document.querySelectorAll('main *, header *')]
                .map(e => e.getBoundingClientRect().right)),
            smallestText: Math.min(...[...document.querySelectorAll('main *')]
                .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
                .map(e => parseFloat(getComputedStyle(e).fontSize))),
        })""")
        assert widths["page"] <= PHONE_WIDTH, widths
        assert widths["widest"] <= PHONE_WIDTH + 0.5, widths
        assert widths["smallestText"] >= 11, widths
        phone.wait_for_selector("#history-table tr[data-figure='orders'] td:not(:empty)")
        phone.screenshot(path=tmp_path / "phone.png", full_page=True)
        if os.environ.get("UPDATE_README_SCREENSHOT"):
            shutil.copyfile(tmp_path / "phone.png", PHONE_SCREENSHOT)



def control_sizes(page: Page) -> dict[str, list[float]]:
    return page.evaluate("""ids => Object.fromEntries(ids.map(id => {
        const box = document.getElementById(id).getBoundingClientRect();
        return [id, [box.width, box.height, box.right]];
    }))""", list(PHONE_CONTROLS))


def test_at_a_phone_s_width_every_control_is_a_tap_target(dashboard: Dashboard):
    with another_page(dashboard, "/", PHONE_WIDTH, 812) as phone:
        phone.wait_for_selector("#rejections-button:not(:empty)")
        small = {control: size for control, size in control_sizes(phone).items()
                 if size[0] < TAP_TARGET or size[1] < TAP_TARGET or size[2] > PHONE_WIDTH}
        assert small == {}, f"controls smaller than {TAP_TARGET} px or out of the page"


def chart_measures(page: Page) -> dict[str, dict]:
    """Each chart's canvas and plot area, its axes' label size, and the room between its labels."""
    return page.evaluate("""ids => Object.fromEntries(ids.map(id => {
        const chart = Chart.getChart(id);
        const box = chart.canvas.getBoundingClientRect();
        const axes = Object.values(chart.scales).filter(s => s.options.display !== false
                                                           && s.ticks.length);
        const gaps = axes.map(s => {
            const at = s.ticks.map((_, i) => s.getPixelForTick(i));
            const room = at.slice(1).map((p, i) => Math.abs(p - at[i]));
            const label = s.isHorizontal()
                ? Math.max(...s._labelSizes.widths) : s._labelSizes.highest.height;
            return room.length ? Math.min(...room) - label : Infinity;
        });
        return [id, { right: box.right, width: box.width, height: box.height,
                      plotWidth: chart.chartArea.width, plotHeight: chart.chartArea.height,
                      fontSize: Math.min(...axes.map(s => s._resolveTickFontOptions(0).size)),
                      xLabels: chart.scales.x.ticks.length, tightest: Math.min(...gaps) }];
    }))""", list(CHARTS))


def test_at_a_phone_s_width_the_charts_are_readable(dashboard: Dashboard):
    """Each chart fits the page, its labels are 11 px or more and never overlap, and its bars
    have at least half the chart's width and 100 px of height to be drawn in."""
    with another_page(dashboard, "/", PHONE_WIDTH, 812) as phone:
        eventually(lambda: same_figures(phone, dashboard.url), message="the phone page's figures")
        for chart, measure in chart_measures(phone).items():
            if measure["width"] == 0:  # a dish chart hidden: no report for its hour yet
                continue
            assert measure["right"] <= PHONE_WIDTH, (chart, measure)
            assert measure["fontSize"] >= 11, (chart, measure)
            assert measure["tightest"] >= 0, (chart, measure)
            assert measure["plotWidth"] >= measure["width"] / 2, (chart, measure)
            assert measure["plotHeight"] >= 100, (chart, measure)
            assert measure["xLabels"] >= 3, (chart, measure)


def focus_walk(page: Page, presses: int) -> list[dict]:
    """Where each press of Tab lands: the focused element's id and its focus outline."""
    page.evaluate("document.activeElement?.blur()")
    landed = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        landed.append(page.evaluate("""() => { const e = document.activeElement;
            const style = getComputedStyle(e);
            return { id: e.id, outline: style.outlineStyle,
                     width: parseFloat(style.outlineWidth), color: style.outlineColor }; }"""))
    return landed


def test_the_keyboard_reaches_every_control_with_a_visible_focus(dashboard: Dashboard):
    with another_page(dashboard, "/", PHONE_WIDTH, 812) as phone:
        phone.wait_for_selector("#rejections-button:not(:empty)")
        landed = focus_walk(phone, 20)
        order = [stop["id"] for stop in landed if stop["id"] in PHONE_CONTROLS]
        reached = list(dict.fromkeys(order))  # the date picker takes a Tab per field
        assert reached == list(PHONE_CONTROLS), landed
        unmarked = [stop for stop in landed if stop["id"] in PHONE_CONTROLS
                    and (stop["outline"] == "none" or stop["width"] < 2)]
        assert unmarked == [], "a control shows no focus outline"


HISTORY_FIGURES = ("revenue", "orders", "items", "avg_ticket", "unique_customers")


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZONE)


def history_in_database(url: str, first: date, after: date, store: str = CHAIN_STORE) -> dict[str, str]:
    """The daily reports' figures of ``store`` over [first, after), as the history should show them."""
    bounds = (midnight(first), midnight(after), store)
    orders, items, revenue = query(
        url, "SELECT coalesce(sum(orders), 0), coalesce(sum(items_sold), 0), coalesce(sum(gross_revenue), 0)"
             " FROM report_sales WHERE granularity = 'day' AND period_start >= %s AND period_start < %s"
             " AND store_id = %s", bounds)[0]
    customers = query(url, "SELECT count(DISTINCT customer_id) FROM report_customers"
                           " WHERE granularity = 'day' AND period_start >= %s AND period_start < %s"
                           " AND store_id = %s", bounds)[0][0]
    ticket = (revenue / orders).quantize(Decimal("0.01"), ROUND_HALF_UP) if orders else Decimal(0)
    return {"revenue": brl(revenue), "orders": whole(orders), "items": whole(items),
            "avg_ticket": brl(ticket), "unique_customers": whole(customers)}


def payments_in_database(url: str, first: date, after: date, store: str = CHAIN_STORE) -> dict[str, str]:
    rows = query(url, "SELECT p.key, sum((p.value #>> '{}')::numeric) FROM report_sales s,"
                      " jsonb_each(s.revenue_by_payment) p WHERE s.granularity = 'day'"
                      " AND s.period_start >= %s AND s.period_start < %s AND s.store_id = %s GROUP BY 1",
                 (midnight(first), midnight(after), store))
    return {name: brl(total) for name, total in rows}


def history_on_page(page: Page, column: int) -> dict[str, str]:
    """One column of the history table (0: the period, 1: the one before, 2: a week before)."""
    return page.evaluate(
        """column => Object.fromEntries([...document.querySelectorAll('#history-table tr[data-figure]')]
            .map(row => [row.dataset.figure, row.querySelectorAll('td')[column].firstChild?.textContent
                                                 .replace(/\u00a0/g, ' ')]))""",
        column)


def choose_history(page: Page, day: date, period: str) -> None:
    page.fill("#history-date", day.isoformat())
    page.dispatch_event("#history-date", "change")
    page.select_option("#history-period", period)


def test_the_history_shows_a_day_a_week_and_a_month_as_the_reports_say(dashboard: Dashboard):
    page, url = dashboard.page, dashboard.url
    today = datetime.now(ZONE).date()
    yesterday, a_week_ago = today - timedelta(days=1), today - timedelta(days=7)
    choose_history(page, today, "day")

    def day_view() -> None:
        assert history_on_page(page, 0) == history_in_database(url, today, today + timedelta(days=1))
        assert history_on_page(page, 1) == history_in_database(url, yesterday, today)
        assert history_on_page(page, 2) == history_in_database(url, a_week_ago,
                                                               a_week_ago + timedelta(days=1))
        assert breakdown_on_page(page, "history-payments") == payments_in_database(
            url, today, today + timedelta(days=1))

    eventually(day_view, message="the day's history never matched the reports")
    assert history_on_page(page, 0)["orders"] != "0", "the day under test had no reported sales"
    assert text(page, "#history-span") == today.strftime("%d/%m/%Y")
    assert page.locator("#history-table thead .weekday").is_visible()
    monday = today - timedelta(days=today.weekday())
    for period, first, after, before in (
        ("week", monday, monday + timedelta(days=7), monday - timedelta(days=7)),
        ("month", today.replace(day=1), (today.replace(day=1) + timedelta(days=32)).replace(day=1),
         (today.replace(day=1) - timedelta(days=1)).replace(day=1)),
    ):
        choose_history(page, today, period)

        def period_view(first: date = first, after: date = after, before: date = before) -> None:
            assert history_on_page(page, 0) == history_in_database(url, first, after)
            assert history_on_page(page, 1) == history_in_database(url, before, first)
            assert text(page, "#history-span") == f"{first:%d/%m/%Y} a {after - timedelta(days=1):%d/%m/%Y}"

        eventually(period_view, message=f"the {period}'s history never matched the reports")
        assert not page.locator("#history-table thead .weekday").is_visible()


@pytest.mark.parametrize(("numbers", "separator", "point"), [("br", ";", ","), ("intl", ",", ".")])
def test_the_history_exports_what_it_shows_as_csv(dashboard: Dashboard, numbers: str, separator: str,
                                                  point: str):
    page, url = dashboard.page, dashboard.url
    today = datetime.now(ZONE).date()
    choose_history(page, today, "week")
    page.select_option("#history-numbers", numbers)
    href = page.get_attribute("#history-csv", "href")
    assert href and f"numbers={numbers}" in href and "period=week" in href
    response = page.request.get(dashboard.worker.url + href)
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text().lstrip("\ufeff")), delimiter=separator))
    assert rows[0][0] == "Dia" and rows[-1][0] == "Total"
    monday = today - timedelta(days=today.weekday())
    wanted = history_in_database(url, monday, monday + timedelta(days=7))
    columns = ("orders", "items", "revenue", "avg_ticket", "unique_customers")
    total = dict(zip(columns, rows[-1][1:], strict=True))
    money_as = {key: wanted[key].removeprefix("R$ ").replace(".", "").replace(",", point)
                for key in ("revenue", "avg_ticket")}
    assert total == {**{key: wanted[key].replace(".", "") for key in ("orders", "items", "unique_customers")},
                     **money_as}
    week = (midnight(monday), midnight(monday + timedelta(days=7)))
    days = query(url, "SELECT count(*) FROM report_sales WHERE granularity = 'day' AND period_start >= %s"
                      " AND period_start < %s AND store_id = ''", week)[0][0]
    assert len(rows) == days + 2


STORE = "loja-centro"
"""One of the two stores of the known orders."""


def store_figures_on_page(page: Page, url: str, store: str) -> None:
    """Today's figures, the dish charts, the insights and today's history are ``store``'s (or the chain's)."""
    assert kpis_on_page(page) == today_in_database(url, store)
    for granularity in ("hour", "day"):
        data = chart_data(page, f"dishes-{granularity}-chart")
        assert list(zip(data["labels"], data["series"][0], strict=True)) == report_dishes_in_database(
            url, granularity, store)
    assert page.locator("#insights .message").all_inner_texts() == insights_in_database(url, "pt-BR", store)
    today = datetime.now(ZONE).date()
    assert history_on_page(page, 0) == history_in_database(url, today, today + timedelta(days=1), store)
    assert breakdown_on_page(page, "history-payments") == payments_in_database(
        url, today, today + timedelta(days=1), store)


def test_the_store_picker_shows_one_store_or_the_whole_chain(dashboard: Dashboard):
    url = dashboard.url
    assert today_in_database(url, STORE) != today_in_database(url)  # the store is not the chain
    assert insights_in_database(url, "pt-BR", STORE), "the report job wrote no insights for the store"
    with another_page(dashboard, "/") as page:
        page.wait_for_selector(f"#store option[value='{STORE}']", state="attached")
        options = page.eval_on_selector_all("#store option", "all => all.map(o => [o.value, o.textContent])")
        assert options == [["", "Toda a rede"], *([store, store] for store in sorted({"main", STORE}))]
        eventually(lambda: store_figures_on_page(page, url, CHAIN_STORE), message="the chain's figures")

        page.select_option("#store", STORE)
        assert page.url.endswith(f"/?store={STORE}")
        eventually(lambda: store_figures_on_page(page, url, STORE), message="the store's figures")
        assert breakdown_on_page(page, "by-store").keys() == {STORE}
        csv_link = page.get_attribute("#history-csv", "href")
        assert csv_link and f"store={STORE}" in csv_link

        page.select_option("#store", "")
        assert "store=" not in page.url
        eventually(lambda: store_figures_on_page(page, url, CHAIN_STORE), message="the chain's figures again")
    with another_page(dashboard, f"/?store={STORE}") as bookmarked:
        eventually(lambda: store_figures_on_page(bookmarked, url, STORE), message="a bookmarked store")
        assert bookmarked.input_value("#store") == STORE


@pytest.mark.parametrize("width", [PHONE_WIDTH, 1280])
def test_axe_finds_nothing_serious(dashboard: Dashboard, width: int):
    """axe-core (npm), run in the page once its figures and history are drawn: no serious or
    critical WCAG 2 A/AA violation. Its script is injected, hence this page ignores the CSP."""
    with another_page(dashboard, "/", width, 900, bypass_csp=True) as page:
        eventually(lambda: same_figures(page, dashboard.url), message="the page's figures")
        page.wait_for_selector("#history-table tr[data-figure='orders'] td:not(:empty)")
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate("""async () => {
            const result = await axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa'] });
            return result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
                .map(v => `${v.id}: ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`);
        }""")
        assert violations == []


def test_nothing_went_wrong_and_the_screenshot_is_kept(dashboard: Dashboard, tmp_path: Path):
    assert dashboard.log.exceptions == []
    assert dashboard.log.console_errors == []
    assert dashboard.log.elsewhere == [], "the page asked for something from another address"
    dashboard.page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        shutil.copyfile(tmp_path / "dashboard.png", README_SCREENSHOT)


def test_an_outage_of_postgres_shows_and_the_page_recovers(dashboard: Dashboard, tmp_path: Path):
    page, log = dashboard.page, dashboard.log
    banner = page.locator("#banner")
    before = kpis_on_page(page)
    dashboard.postgres.stop()
    try:
        banner.wait_for(state="visible", timeout=40_000)
        assert "O PostgreSQL está indisponível: os números abaixo são de" in text(page, "#banner")
        eventually(lambda: shows(page, "#health-database", "indisponível"))
        assert kpis_on_page(page) == before, "the last figures should stay on the page"
        page.screenshot(path=tmp_path / "outage.png")
    finally:
        dashboard.postgres.start()
    banner.wait_for(state="hidden", timeout=60_000)
    eventually(lambda: shows(page, "#health-database", "acessível"))
    eventually(lambda: same_figures(page, dashboard.url), message="the figures never came back")
    page.screenshot(path=tmp_path / "recovered.png")
    assert log.exceptions == []
    assert all(UNAVAILABLE_503 in error for error in log.console_errors), log.console_errors
