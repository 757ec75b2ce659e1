"""The report timer's runner with real subprocesses: small stand-in scripts play the job."""

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import psutil
import psycopg
import pytest

from restaurant_app.database import Database
from restaurant_app.report_runner import RecordFailure, ReportRunner
from restaurant_app.settings import PROJECT_ROOT
from spark_reports.ledger import REPORT_LOCK_ID, record_failure
from tests.services import query, wait_until

pytestmark = pytest.mark.integration


def stand_in(tmp_path: Path, body: str) -> list[str]:
    """A command that runs ``body`` as a Python script in place of the report job."""
    script = tmp_path / "stand_in_job.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


SUCCEEDS = """
    import sys, time
    from spark_reports.result import JobResult, result_line
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("Spark says hello")
    print(result_line(JobResult("succeeded", run_id=4, windows=7, orders_read=20, rows_read=42, seconds=0.1)))
"""

HANGS = """
    import subprocess, sys, time
    import psycopg
    if len(sys.argv) > 2:  # hold the report lock, as the real job does
        connection = psycopg.connect(sys.argv[2], autocommit=True)
        connection.execute("SELECT pg_advisory_lock(%s)", (int(sys.argv[3]),))
    child = subprocess.Popen(["sleep", "300"])  # like the JVM that PySpark starts
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(300)
"""

CRASHES = """
    import sys
    print("Traceback (most recent call last): ...", file=sys.stderr)
    print("RuntimeError: the stand-in job broke", file=sys.stderr)
    sys.exit(3)
"""

GIVES_UP = """
    import os, subprocess, sys, time
    from spark_reports.watchdog import launcher_pid, start_watchdog
    start_watchdog(launcher_pid(os.environ), timeout_seconds=2)
    child = subprocess.Popen(["sleep", "300"])  # like the JVM that PySpark starts
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(300)
"""

LAUNCHES_THE_JOB = """
    import asyncio, sys
    from restaurant_app.report_runner import ReportRunner
    asyncio.run(ReportRunner([sys.executable, "-m", "spark_reports"], timeout=300).run())
"""
"""A worker in miniature: the real runner launching the real job."""

FAILS_AND_SAYS_SO = """
    import sys
    from spark_reports.result import JobResult, result_line
    print(result_line(JobResult("failed", run_id=9, error="no luck")))
    sys.exit(1)
"""


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "restaurant_app.report_runner" and r.getMessage().startswith("Report run")]


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its parent counts as exited).

    A killed process dies when the kernel next schedules it, so callers poll this.
    """
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.fixture
def recorder(database_url: str) -> RecordFailure:
    """The worker's way of recording a failed run, on a migrated database."""
    asyncio.run(Database(database_url).migrate())
    return partial(record_failure, database_url)


async def test_a_successful_run_is_logged_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    outcome = (await ReportRunner(stand_in(tmp_path, SUCCEEDS), timeout=30).run()).result
    assert (outcome.status, outcome.windows, outcome.rows_read) == ("succeeded", 7, 42)
    [line] = outcome_lines(caplog)
    assert line.startswith("Report run succeeded in ")
    assert line.endswith(" s: 7 window(s) written, 42 order line(s) read.")


async def test_a_run_given_a_head_start_begins_at_its_moment_and_is_timed_from_it(
    recorder: RecordFailure, database_url: str
):
    """The timer launches the job early: the real job loads pyspark, then starts its run on time."""
    runner = ReportRunner([sys.executable, "-m", "spark_reports"], timeout=300, cwd=PROJECT_ROOT,
                          env={**os.environ, "DATABASE_URL": database_url})
    moment = time.time() + 4
    outcome = await runner.run(not_before=moment)
    assert outcome.result.status == "succeeded", outcome.result.error
    [(started,)] = query(database_url, "SELECT extract(epoch FROM started_at) FROM report_runs")
    assert started >= moment
    assert outcome.result.seconds <= time.time() - moment


async def test_a_tick_while_a_run_is_going_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    runner = ReportRunner([*stand_in(tmp_path, SUCCEEDS), "1.5"], timeout=30)
    first = runner.launch()
    await asyncio.sleep(0.3)
    assert runner.running
    assert runner.launch() is None
    assert any(r.getMessage().startswith("Skipping this report run: the previous one is still going")
               for r in caplog.records)
    assert (await first).result.status == "succeeded"
    assert not runner.running
    again = runner.launch()
    assert again is not None and (await again).result.status == "succeeded"


async def test_a_hung_job_is_killed_with_what_it_started_and_recorded(
    tmp_path: Path, database_url: str, recorder: RecordFailure, caplog: pytest.LogCaptureFixture
):
    with psycopg.connect(database_url) as conn:  # what the real job writes when it starts
        conn.execute("INSERT INTO report_runs (mode, status, watermark)"
                     " VALUES ('incremental', 'running', now())")
    pid_file = tmp_path / "child.pid"
    command = [*stand_in(tmp_path, HANGS), str(pid_file), database_url, str(REPORT_LOCK_ID)]
    runner = ReportRunner(command, timeout=6, record_failure=recorder)
    started = time.monotonic()
    outcome = (await runner.run()).result
    assert outcome.status == "killed"
    assert time.monotonic() - started < 20
    assert wait_until(lambda: is_gone(int(pid_file.read_text())), timeout=10)
    assert outcome_lines(caplog) == [
        f"Report run killed after {outcome.seconds:.1f} s: the report job was killed after running for 6 s."
    ]
    # A timeout is an outage: it never counts toward skipping the run's orders.
    assert query(database_url, "SELECT status, error, outage FROM report_runs") == [
        ("failed", "the report job was killed after running for 6 s", True)
    ]


async def test_a_crashed_job_is_logged_and_recorded(
    tmp_path: Path, database_url: str, recorder: RecordFailure
):
    runner = ReportRunner(stand_in(tmp_path, CRASHES), timeout=30,
                          record_failure=recorder)
    outcome = (await runner.run()).result
    assert outcome.status == "failed"
    assert outcome.error == "exit code 3: RuntimeError: the stand-in job broke"
    assert query(database_url, "SELECT status, error, finished_at IS NOT NULL, outage FROM report_runs") == [
        ("failed", "exit code 3: RuntimeError: the stand-in job broke", True, True)
    ]


async def test_a_failure_the_job_recorded_itself_is_not_recorded_again(
    tmp_path: Path, database_url: str, recorder: RecordFailure
):
    runner = ReportRunner(stand_in(tmp_path, FAILS_AND_SAYS_SO), timeout=30,
                          record_failure=recorder)
    outcome = await runner.run()
    assert (outcome.result.status, outcome.result.error, outcome.reported) == ("failed", "no luck", True)
    assert query(database_url, "SELECT count(*) FROM report_runs") == [(0,)]


async def test_stopping_kills_a_running_job(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    runner = ReportRunner([*stand_in(tmp_path, HANGS), str(pid_file)], timeout=300)
    runner.launch()
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.1)
    await runner.stop()
    assert not runner.running
    assert wait_until(lambda: is_gone(int(pid_file.read_text())), timeout=10)


async def test_a_job_past_its_own_timeout_stops_with_what_it_started(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    runner = ReportRunner([*stand_in(tmp_path, GIVES_UP), str(pid_file)], timeout=60)
    outcome = (await runner.run()).result
    assert outcome.status == "failed" and outcome.seconds < 20
    assert outcome.error.endswith("The report job stops here: it ran for 2 s (REPORT_TIMEOUT_SECONDS).")
    assert wait_until(lambda: is_gone(int(pid_file.read_text())), timeout=10)


REPORT_LOCK_HOLDER = """
SELECT a.wait_event_type FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def report_lock_holder(database_url: str) -> list[tuple]:
    """What the session holding the report lock waits for: [('Lock',)] while it waits for a table lock."""
    return query(database_url, REPORT_LOCK_HOLDER, (REPORT_LOCK_ID,))


def test_a_job_whose_worker_is_killed_stops_and_frees_the_report_lock(tmp_path: Path, database_url: str):
    asyncio.run(Database(database_url).migrate())
    env = {**os.environ, "DATABASE_URL": database_url}
    with psycopg.connect(database_url) as blocker:
        # The job takes the report lock, then waits for this lock in the middle of a statement.
        blocker.execute("LOCK TABLE report_scope IN ACCESS SHARE MODE")
        launcher = subprocess.Popen(stand_in(tmp_path, LAUNCHES_THE_JOB), env=env, cwd=PROJECT_ROOT)
        try:
            wait_until(lambda: report_lock_holder(database_url) == [("Lock",)], timeout=60)
            [fork_server] = psutil.Process(launcher.pid).children()
            [job] = fork_server.children()
            launcher.kill()
            launcher.wait()
            killed = time.monotonic()
            wait_until(lambda: not report_lock_holder(database_url), timeout=30)
            seconds = time.monotonic() - killed
        finally:
            launcher.kill()
    assert wait_until(lambda: is_gone(job.pid), timeout=5)
    assert seconds < 10
