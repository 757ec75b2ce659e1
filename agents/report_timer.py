"""The report timer: every REPORT_INTERVAL_SECONDS the leader launches the Spark report job."""

import sys
from functools import partial

from agents.report_runner import ReportRunner
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.worker import app, settings
from spark_reports.ledger import record_failure

runner = ReportRunner(
    [sys.executable, "-m", "spark_reports"],
    timeout=settings.report_timeout_seconds,
    cwd=PROJECT_ROOT,
    record_failure=partial(record_failure, settings.database_url),
)


@app.timer(interval=settings.report_interval_seconds, on_leader=True)
async def launch_report_job() -> None:
    """Start the job in the background; a run still going makes this tick a logged no-op."""
    runner.launch()


@app.on_before_shutdown.connect
async def stop_report_job(sender: object, **kwargs: object) -> None:
    """Do not leave a report job (and its Spark JVM) running after the worker stops."""
    await runner.stop()
