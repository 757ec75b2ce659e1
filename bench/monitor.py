"""CPU and memory of the processes under test, sampled in a background thread."""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.5
"""Often enough for windows of many seconds; each sample walks the PostgreSQL process tree."""


@dataclass
class Sample:
    at: float
    """Wall-clock time (``time.time()``), comparable with PostgreSQL's timestamps."""
    cpu: dict[str, float]
    """CPU seconds (user + system) used so far, by group name."""


def process_tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of ``root`` and its living children; 0 once it is gone."""
    total = 0.0
    try:
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        return 0.0
    return total


def reaped_children_cpu(process: psutil.Process) -> float:
    """CPU seconds of the children ``process`` has waited for."""
    times = process.cpu_times()
    return times.children_user + times.children_system


def descendants_cpu(process: psutil.Process) -> float:
    """CPU seconds of what ``process`` started, living or waited for, one level further down too:
    for a worker or a bench, its fork server and the report jobs that server forked."""
    total = reaped_children_cpu(process)
    for child in process.children():
        try:
            total += process_tree_cpu(child) + reaped_children_cpu(child)
        except psutil.NoSuchProcess:
            continue
    return total


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory the process has had (Linux ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class CpuMonitor:
    """Samples the CPU time of named process trees until stopped."""

    groups: dict[str, psutil.Process]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuMonitor:
        self._thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(SAMPLE_SECONDS)

    def _take(self) -> None:
        cpu = {name: process_tree_cpu(process) for name, process in self.groups.items()}
        self.samples.append(Sample(time.time(), cpu))

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each group used between two wall-clock times, from the nearest samples."""
        before, after = self._nearest(start), self._nearest(end)
        return {name: after.cpu[name] - before.cpu[name] for name in self.groups}

    def _nearest(self, moment: float) -> Sample:
        times = [s.at for s in self.samples]
        index = bisect.bisect_left(times, moment)
        candidates = self.samples[max(index - 1, 0): index + 1]
        return min(candidates, key=lambda s: abs(s.at - moment))
