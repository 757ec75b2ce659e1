"""Launching the report job as a subprocess: one at a time, killed if it hangs, outcome logged.

The job is forked from a fork server (``restaurant_app.fork_server``) that has imported its modules, so
a run does not spend most of a CPU-second importing pyspark, pandas and pyarrow again.
"""

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
from restaurant_app.fork_server import ForkedProcess, ForkServer, ForkServerGone
from restaurant_app.settings import redacted
from spark_reports.result import JobResult, RunStatus, parse_result
from spark_reports.watchdog import LAUNCHER_PID_VARIABLE

log = logging.getLogger(__name__)

RecordFailure = Callable[[datetime, str], Awaitable[None]]

HEAD_START_SECONDS = 2.0
"""How early the report timer launches the job before its run is due: forking it takes
milliseconds, but the fork server's first start (Python and pyspark) takes about a second, and
the job opens its Spark Connect session meanwhile."""


@dataclass(frozen=True)
class Outcome:
    """How one launch of the job ended: the job's result, and whether the job printed it itself."""

    result: JobResult
    reported: bool
    """True when the job printed its result line, having recorded its run in report_runs itself."""


class ReportRunner:
    """Runs the report job as a child process; never two at once, and never longer than ``timeout``.

    ``command`` is a Python command line (``python -m spark_reports``), forked from a fork server
    that imports the modules in ``preload`` once.
    """

    def __init__(
        self, command: Sequence[str], timeout: float, *, env: dict[str, str] | None = None,
        cwd: Path | None = None, record_failure: RecordFailure | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.command = list(command)
        self.fork_server = ForkServer(preload)
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
        """Kill a run still going, for a clean shutdown, and stop the fork server; the next run
        covers the killed run's windows."""
        if self._task is not None and self.running:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.fork_server.stop()

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
        try:
            outcome = await self._launch_and_wait([*self.command, *args], head_start)
        except ForkServerGone as exc:
            outcome = Outcome(JobResult(RunStatus.FAILED, error=str(exc)), reported=False)
        outcome.result.seconds = self._elapsed()
        log_outcome(outcome.result)
        metrics.report_finished(outcome.result.status, outcome.result.seconds, started_at.timestamp(),
                                time.time())
        if outcome.result.status in (RunStatus.KILLED, RunStatus.FAILED) and not outcome.reported:
            await self._record(started_at, outcome.result)
        return outcome

    async def _launch_and_wait(self, command: list[str], head_start: float) -> Outcome:
        """Fork the job, wait for its end or kill it at the timeout, and read its outcome."""
        deadline = asyncio.get_running_loop().time() + self.timeout + head_start
        try:
            async with asyncio.timeout_at(deadline):
                launcher = await self.fork_server.start()
                process = await self.fork_server.spawn(command, self._job_env(launcher), self.cwd)
        except TimeoutError:
            await self.fork_server.stop()
            gone = f"the fork server did not fork the job within {self.timeout:.0f} s"
            raise ForkServerGone(gone) from None
        try:
            async with asyncio.timeout_at(deadline):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            await kill_group(process)
            killed = f"the report job was killed after running for {self.timeout:.0f} s"
            return Outcome(JobResult(RunStatus.KILLED, error=killed), reported=False)
        except asyncio.CancelledError:
            await kill_group(process)
            raise
        return read_outcome(process.returncode, stdout, stderr)

    def _job_env(self, launcher: int) -> dict[str, str]:
        """The job's environment, naming its parent, the fork server, as its launcher: the job stops
        if the fork server ends, which it does when this process dies."""
        return {**(os.environ if self.env is None else self.env), LAUNCHER_PID_VARIABLE: str(launcher)}

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started, 2)

    async def _record(self, started_at: datetime, result: JobResult) -> None:
        if self.record_failure is None:
            return
        try:
            await self.record_failure(started_at, result.error or result.status)
        except Exception as exc:  # noqa: BLE001 - the failure is logged already; this is a bonus
            log.warning("Could not record the failed report run in report_runs: %s", exc)


async def kill_group(process: ForkedProcess) -> None:
    """Kill the job and everything it started (Spark's JVM) and wait for it to go.

    A job forked a moment ago may not lead its own process group yet: then it is killed alone,
    before it could start anything.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    with contextlib.suppress(ForkServerGone):
        await process.wait()


def read_outcome(returncode: int | None, stdout: bytes, stderr: bytes) -> Outcome:
    """The outcome from the job's result line, or from its exit code and last error line."""
    result = parse_result(stdout)
    if result is not None:
        return Outcome(result, reported=True)
    last_line = next((line for line in reversed(stderr.decode(errors="replace").splitlines())
                      if line.strip()), "no error message")
    failed = JobResult(RunStatus.FAILED, error=redacted(f"exit code {returncode}: {last_line.strip()}"))
    return Outcome(failed, reported=False)


def log_outcome(result: JobResult) -> None:
    if result.status == RunStatus.SUCCEEDED:
        log.info("Report run succeeded in %.1f s: %d window(s) written, %d order line(s) read.",
                 result.seconds, result.windows, result.rows_read)
    elif result.status == RunStatus.SKIPPED:
        log.info("Report run skipped after %.1f s: another report job holds the lock.", result.seconds)
    else:
        log.error("Report run %s after %.1f s: %s.", result.status, result.seconds, result.error)
