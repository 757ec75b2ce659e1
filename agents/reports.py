"""The report timer: every REPORT_INTERVAL_SECONDS the leader launches the Spark report job."""

import sys

from restaurant_app.app import app, database
from restaurant_app.settings import PROJECT_ROOT, settings
from spark_reports.runner import ReportRunner

runner = ReportRunner(
    [sys.executable, "-m", "spark_reports"],
    timeout=settings.report_timeout_seconds,
    cwd=PROJECT_ROOT,
    record_failure=database.record_report_failure,
)


@app.timer(interval=settings.report_interval_seconds, on_leader=True)
async def launch_report_job() -> None:
    """Start the job in the background; a run still going makes this tick a logged no-op."""
    runner.launch()


@app.on_before_shutdown.connect
async def stop_report_job(sender: object, **kwargs: object) -> None:
    """Do not leave a report job (and its Spark JVM) running after the worker stops."""
    await runner.stop()
