"""Launching the report job as a subprocess: one at a time, killed if it hangs, outcome logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from restaurant_app import metrics
from spark_reports.result import JobResult, parse_result
from spark_reports.watchdog import LAUNCHER_PID_VARIABLE

log = logging.getLogger(__name__)

RecordFailure = Callable[[datetime, str], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    """How one launch of the job ended: the job's result, and whether the job printed it itself."""

    result: JobResult
    reported: bool
    """True when the job printed its result line, having recorded its run in report_runs itself."""


class ReportRunner:
    """Runs the report job as a child process; never two at once, and never longer than ``timeout``."""

    def __init__(
        self, command: Sequence[str], timeout: float, *, env: dict[str, str] | None = None,
        cwd: Path | None = None, record_failure: RecordFailure | None = None,
    ) -> None:
        self.command = list(command)
        self.timeout = timeout
        self.env = env
        self.cwd = cwd
        self.record_failure = record_failure
        self._task: asyncio.Task[Outcome] | None = None
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def launch(self, not_before: float | None = None) -> asyncio.Task[Outcome] | None:
        """Start a run in the background, or return None (and say so) if one is still going."""
        if self.running:
            log.info("Skipping this report run: the previous one is still going after %.0f s.",
                     time.monotonic() - self._started)
            return None
        self._task = asyncio.create_task(self.run(not_before))
        return self._task

    async def stop(self) -> None:
        """Kill a run still going, for a clean shutdown; the next run covers its windows."""
        if self._task is not None and self.running:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self, not_before: float | None = None) -> Outcome:
        """Run the job to its end (or kill it at the timeout), log the outcome in one line and return it.

        With ``not_before`` (Unix time) the job starts now, loads pyspark and begins its run at that
        moment (``--not-before``); the run's duration and timeout count from then.
        """
        now = time.time()
        head_start = 0.0 if not_before is None else max(0.0, not_before - now)
        self._started = time.monotonic() + head_start
        started_at = datetime.fromtimestamp(now + head_start, UTC)
        args = [] if not_before is None else ["--not-before", f"{not_before:.3f}"]
        process = await asyncio.create_subprocess_exec(
            *self.command, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=self._job_env(), cwd=self.cwd, start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout + head_start)
        except TimeoutError:
            await kill_group(process)
            killed = f"the report job was killed after running for {self.timeout:.0f} s"
            outcome = Outcome(JobResult("killed", error=killed), reported=False)
        except asyncio.CancelledError:
            await kill_group(process)
            raise
        else:
            outcome = read_outcome(process.returncode, stdout, stderr)
        outcome.result.seconds = self._elapsed()
        log_outcome(outcome.result)
        metrics.report_finished(outcome.result.status, outcome.result.seconds, started_at.timestamp(),
                                time.time())
        if outcome.result.status in ("killed", "failed") and not outcome.reported:
            await self._record(started_at, outcome.result)
        return outcome

    def _job_env(self) -> dict[str, str]:
        """The job's environment, naming this process as its launcher: the job stops if it dies."""
        return {**(os.environ if self.env is None else self.env), LAUNCHER_PID_VARIABLE: str(os.getpid())}

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started, 2)

    async def _record(self, started_at: datetime, result: JobResult) -> None:
        if self.record_failure is None:
            return
        try:
            await self.record_failure(started_at, result.error or result.status)
        except Exception as exc:  # noqa: BLE001 - the failure is logged already; this is a bonus
            log.warning("Could not record the failed report run in report_runs: %s", exc)


async def kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the job and everything it started (Spark's JVM) and wait for it to go."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def read_outcome(returncode: int | None, stdout: bytes, stderr: bytes) -> Outcome:
    """The outcome from the job's result line, or from its exit code and last error line."""
    result = parse_result(stdout)
    if result is not None:
        return Outcome(result, reported=True)
    last_line = next((line for line in reversed(stderr.decode(errors="replace").splitlines())
                      if line.strip()), "no error message")
    return Outcome(JobResult("failed", error=f"exit code {returncode}: {last_line.strip()}"), reported=False)


def log_outcome(result: JobResult) -> None:
    if result.status == "succeeded":
        log.info("Report run succeeded in %.1f s: %d window(s) written, %d order line(s) read.",
                 result.seconds, result.windows, result.rows_read)
    elif result.status == "skipped":
        log.info("Report run skipped after %.1f s: another report job holds the lock.", result.seconds)
    else:
        log.error("Report run %s after %.1f s: %s.", result.status, result.seconds, result.error)
