"""The report job's watchdog: the job stops when its launcher dies or when it has run too long.

A report job left running keeps its connection, and with it the report lock, so every later run
would stop at once. The worker's runner kills a job that runs too long; this covers the job
whose worker died (SIGKILL leaves no chance to kill it) and the job run by hand.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import NoReturn

log = logging.getLogger("spark_reports")

LAUNCHER_PID_VARIABLE = "REPORT_LAUNCHER_PID"
"""Set by the launcher (the worker's runner) to its own process id, which the job watches."""
POLL_SECONDS = 0.5
STOPPED_EXIT_CODE = 3


def launcher_pid(environ: Mapping[str, str]) -> int | None:
    """The launcher's process id from ``REPORT_LAUNCHER_PID``; None when the job was started without it."""
    value = environ.get(LAUNCHER_PID_VARIABLE)
    return int(value) if value else None


def start_watchdog(launcher: int | None, timeout_seconds: float) -> None:
    """Stop this process once ``launcher`` is no longer its parent, or after ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    threading.Thread(target=_watch, args=(launcher, deadline, timeout_seconds),
                     name="report-job-watchdog", daemon=True).start()


def _watch(launcher: int | None, deadline: float, timeout_seconds: float) -> None:
    while True:
        # An orphan is adopted by another process, so its parent id changes when the launcher dies.
        if launcher is not None and os.getppid() != launcher:
            _stop(f"the process that launched it ({launcher}) is gone")
        if time.monotonic() >= deadline:
            _stop(f"it ran for {timeout_seconds:.0f} s (REPORT_TIMEOUT_SECONDS)")
        time.sleep(POLL_SECONDS)


def _stop(reason: str) -> NoReturn:
    """End the process now: PostgreSQL then rolls back what it did and frees the report lock.

    When the job leads its own process group, as the runner starts it, the whole group goes,
    Spark's JVM with it.
    """
    log.error("The report job stops here: %s.", reason)
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(STOPPED_EXIT_CODE)
