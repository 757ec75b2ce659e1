"""SPARK_REMOTE's token is never echoed, and /reports/latest answers a bounded number of rows."""

import asyncio
from datetime import UTC, datetime

import pytest

from infra.scratch import WorkerProcess
from infra.stack import free_port
from restaurant_app.order_sink import save_orders
from restaurant_app.settings import redacted, shown_remote
from restaurant_app.traffic import OrderGenerator
from restaurant_app.web.reports import MAX_LATEST_DISHES, MAX_LATEST_INSIGHTS
from tests.services import execute, fetch, get, query, run_report_job, wait_until

TOKEN = "s3cr3t-t0ken-19"


def test_a_remote_is_shown_without_its_parameters_or_user():
    assert shown_remote(f"sc://spark.example:15002/;token={TOKEN};user_id=ana") == "sc://spark.example:15002"
    assert shown_remote("sc://ana:pw@spark.example/;token=x") == "sc://spark.example"


def test_a_token_is_hidden_wherever_it_is_in_a_text():
    text = f"cannot reach sc://h:1/;user_id=a;token={TOKEN};x=1 (and ;Token = {TOKEN}/)"
    assert TOKEN not in redacted(text)
    assert redacted(text).startswith("cannot reach sc://h:1/;user_id=a;token=<hidden>;x=1")


@pytest.mark.integration
def test_health_and_report_runs_never_show_the_token(worker: WorkerProcess, database_url: str):
    remote = f"sc://127.0.0.1:{free_port()}/;token={TOKEN};user_id=ana"
    worker.env["SPARK_REMOTE"] = remote
    worker.start()
    status, body = fetch(worker.url + "/health")
    assert status == 200 and TOKEN.encode() not in body
    assert get(worker.url + "/health")[1]["spark"] == {
        "ok": False, "remote": shown_remote(remote), "error": "Spark Connect is unreachable"}

    asyncio.run(save_orders(database_url, [OrderGenerator(seed=195).order()]))  # work for Spark
    result = run_report_job(database_url, env={"SPARK_REMOTE": remote})
    assert result["status"] == "failed"
    errors = query(database_url, "SELECT error FROM report_runs")
    assert errors and all(TOKEN not in (error or "") for (error,) in errors)
    assert any("unreachable" in (error or "") for (error,) in errors)
    assert TOKEN not in worker.log_file.read_text()


@pytest.mark.integration
def test_latest_reports_give_a_bounded_number_of_dishes_and_insights(
    worker: WorkerProcess, database_url: str
):
    worker.start()
    wait_until(lambda: query(database_url, "SELECT to_regclass('report_dishes') IS NOT NULL")[0][0])
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    execute(database_url, """
        INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
            avg_ticket, unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
            revenue_by_channel, revenue_by_payment, revenue_by_store, identified_revenue, computed_at, final,
            gross_sales, net_sales, net_revenue, payments_by_method)
        VALUES ('minute', %s, %s + interval '1 minute', 1, 1, 1, 1, 1, 1, 'd0000', 1, '{}', '{}', '{}', 1,
                now(), true, 1, 1, 1, '{}')
        """, (start, start))
    execute(database_url, """
        INSERT INTO report_dishes (granularity, period_start, dish, quantity, revenue, rank)
        SELECT 'minute', %s, 'd' || lpad(n::text, 4, '0'), 1, 1, n + 1 FROM generate_series(0, 2999) n
        """, (start,))
    execute(database_url, """
        INSERT INTO report_insights (kind, window_start, window_end, subject, message, figures, computed_at)
        SELECT 'dish_trending_up', %s, %s + interval '1 hour', 'd' || n, 'up', '{}', now()
        FROM generate_series(1, 3000) n
        """, (start, start))

    status, body = get(worker.url + "/reports/latest")
    assert status == 200
    dishes = body["minute"]["dishes"]
    assert len(dishes) == MAX_LATEST_DISHES and body["minute"]["dishes_truncated"] is True
    assert [d["rank"] for d in dishes] == list(range(1, MAX_LATEST_DISHES + 1))
    assert len(body["insights"]) == MAX_LATEST_INSIGHTS and body["insights_truncated"] is True
