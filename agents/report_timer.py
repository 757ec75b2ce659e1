"""The report timer: the leader launches the Spark report job just after each minute closes.

Runs are aligned to the clock: at every multiple of REPORT_INTERVAL_SECONDS (60: each minute
boundary) plus REPORT_GRACE_SECONDS (5), so that a minute's late orders are in before its report.
The job is launched ``HEAD_START_SECONDS`` before that moment and waits for it with pyspark loaded.
"""

import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial

from restaurant_app.report_runner import HEAD_START_SECONDS, ReportRunner
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.worker import app, settings
from spark_reports.job import MODULES
from spark_reports.ledger import record_failure

CHECK_EVERY_SECONDS = 0.25
"""How late after its moment a run may start; a check costs microseconds."""


@dataclass
class AlignedSchedule:
    """Says when a run is due: once per ``interval`` seconds, ``grace`` seconds past each boundary.

    A run is due ``lead`` seconds before its moment, which is kept in ``last_due``.
    """

    interval: float
    grace: float
    lead: float = 0.0
    last_due: float | None = None

    def due(self, now: float) -> bool:
        """True the first time it is asked after a boundary plus the grace, less the lead, has passed.

        The first question only sets the clock: the first run is at the next boundary.
        """
        moment = math.floor((now + self.lead - self.grace) / self.interval) * self.interval + self.grace
        if self.last_due is not None and moment <= self.last_due:
            return False
        first, self.last_due = self.last_due is None, moment
        return not first


runner = ReportRunner(
    [sys.executable, "-m", "spark_reports"],
    timeout=settings.report_timeout_seconds,
    cwd=PROJECT_ROOT,
    record_failure=partial(record_failure, settings.database_url),
    preload=MODULES,
    env=({**os.environ, "DATABASE_URL": settings.report_job_database_url}  # the job's own role
         if settings.report_job_database_url else None),
)
schedule = AlignedSchedule(settings.report_interval_seconds, settings.report_grace_seconds,
                           lead=min(HEAD_START_SECONDS, settings.report_interval_seconds / 2))


@app.timer(interval=CHECK_EVERY_SECONDS, on_leader=True)
async def launch_report_job() -> None:
    """Start the job in the background when a run is due; a run still going makes it a logged no-op."""
    if schedule.due(time.time()):
        runner.launch(not_before=schedule.last_due)


@app.on_before_shutdown.connect
async def stop_report_job(sender: object, **kwargs: object) -> None:
    """Do not leave a report job (and its Spark JVM) running after the worker stops."""
    await runner.stop()
