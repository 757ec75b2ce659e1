"""How the report job tells its launcher what happened: one JSON line on stdout with a fixed prefix.

The job prints it last (``result_line``); the worker's runner, the benchmark and the tests read
it back with ``parse_result``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum

RESULT_PREFIX = "REPORT_RESULT "


class RunStatus(StrEnum):
    """A report run's status, in ``report_runs.status``, the result line and the metrics."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # another run held the report lock
    KILLED = "killed"  # by the runner, past its timeout


@dataclass
class JobResult:
    """The outcome of one run of the job."""

    status: RunStatus
    run_id: int | None = None
    windows: int = 0
    orders_read: int = 0
    rows_read: int = 0
    seconds: float = 0.0
    error: str | None = None


def result_line(result: JobResult) -> str:
    return RESULT_PREFIX + json.dumps(asdict(result))


def parse_result(stdout: bytes | str) -> JobResult | None:
    """The result from the last line of ``stdout`` that starts with the prefix, if any parses."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    known = {f.name for f in fields(JobResult)}
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                values = json.loads(line.removeprefix(RESULT_PREFIX))
                result = JobResult(**{k: v for k, v in values.items() if k in known})
                return replace(result, status=RunStatus(result.status))
            except (ValueError, TypeError, AttributeError):
                continue
    return None
