"""An outage of the Spark Connect server while orders flow: the runs fail, none skips, and afterwards
every window equals SQL; /health says ``degraded`` meanwhile and ``ok`` after."""

from pathlib import Path

import pytest

from infra.scratch import WorkerProcess
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from spark_reports.ledger import FAILURES_BEFORE_SKIPPING
from tests.services import get, query, run_report_job, wait_until
from tests.test_reports_job import ZONE, expected, sales_rows, snapshot

pytestmark = pytest.mark.integration

LAST_RUN = "SELECT run_id, status FROM report_runs ORDER BY run_id DESC LIMIT 1"


def runs_since(url: str, run_id: int, status: str) -> list[int]:
    rows = query(url, "SELECT run_id FROM report_runs WHERE run_id > %s AND status = %s ORDER BY run_id",
                 (run_id, status))
    return [row[0] for row in rows]


def test_runs_during_a_spark_outage_skip_nothing_and_the_reports_catch_up(
    worker_env: dict[str, str], database_url: str, tmp_path: Path
):
    server = SparkConnectServer(tmp_path / "spark", free_port(), timezone="UTC", driver_memory="512m")
    server.start()
    worker = WorkerProcess({**worker_env, "ORDER_INTERVAL_SECONDS": "1", "REPORT_INTERVAL_SECONDS": "10",
                            "SPARK_REMOTE": server.remote, "RESTAURANT_TIMEZONE": ZONE},
                           tmp_path / "worker.log")
    try:
        worker.start(ready_timeout=120)
        before = wait_until(lambda: runs_since(database_url, 0, "succeeded"), timeout=180,
                            message="no report run succeeded before the outage")[-1]
        server.stop()
        failed = wait_until(lambda: (found := runs_since(database_url, before, "failed"))
                            and len(found) > FAILURES_BEFORE_SKIPPING + 1 and found, timeout=240,
                            message="the report runs did not fail while Spark was down")
        status, during = get(f"{worker.url}/health")
        server.start()
        after = wait_until(lambda: runs_since(database_url, failed[-1], "succeeded"), timeout=240,
                           message="no report run succeeded after the outage")[0]
        wait_until(lambda: get(f"{worker.url}/health")[1]["status"] == "ok", timeout=30)
        worker.stop()
        final = run_report_job(database_url, env={"SPARK_REMOTE": server.remote})
    finally:
        worker.stop()
        server.stop()
    assert (status, during["status"], during["down"]) == (200, "degraded", ["reports", "spark"])
    assert during["reports"]["failed_runs"] >= 1 and during["reports"]["skipped_windows"] == 0
    assert final["status"] == "succeeded", final
    outages = query(database_url,
                    "SELECT bool_and(outage), count(*) FROM report_runs WHERE status = 'failed'")
    assert outages == [(True, len(runs_since(database_url, before, "failed")))]
    # The first run after the outage read again every order committed since the last success before it.
    assert query(database_url, "SELECT since_run FROM report_runs WHERE run_id = %s", (after,)) == [(before,)]
    assert query(database_url, "SELECT count(*) FROM report_skipped_windows") == [(0,)]
    skipping = "SELECT count(*) FROM report_runs WHERE error LIKE '%%skips ahead%%'"
    assert query(database_url, skipping) == [(0,)]
    tables = snapshot(database_url)
    for unit in ("minute", "hour", "day"):
        assert sales_rows(tables, unit) == expected(database_url)["sales"][unit]
