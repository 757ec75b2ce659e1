"""Where a settled Spark Connect server's CPU goes in a report run: Java Flight Recorder's samples
of its JVM, each counted for the first phase of Spark's work found from its leaf frame up
(``PHASES``). ``python -m bench --only reports`` records the settled runs with it
(``bench.reports``); JFR's own sampling adds to the CPU of the runs it records."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from restaurant_app.java_runtime import java_executable

STACK_DEPTH = 2048
"""JFR keeps 64 frames by default: too few to reach the Spark Connect operation of a sample."""
PHASES = (
    ("analysis (Analyzer, CheckAnalysis)", ("catalyst.analysis.",)),
    ("optimizer", ("catalyst.optimizer.", "execution.SparkOptimizer")),
    ("physical planning", ("QueryPlanner", "SparkStrategies", "QueryExecution$.prepareForExecution",
                           "exchange.EnsureRequirements")),
    ("Spark Connect plan translation", ("connect.planner.SparkConnectPlanner",)),
    ("closure cleaning (class bytes read per job)", ("ClosureCleaner",)),
    ("task (de)serialization", ("ObjectOutputStream", "ObjectInputStream", "JavaSerializer")),
    ("PostgreSQL logins (SCRAM password hashing)", ("ongres.scram.",)),
    ("JDBC (PostgreSQL driver, reads and writes)", ("org.postgresql.", "datasources.jdbc.")),
    ("block manager (checkpointed rows)", ("storage.BlockManager", "storage.memory.")),
    ("task execution (operators)", ("Executor$TaskRunner",)),
    ("scheduler", ("DAGScheduler", "TaskSchedulerImpl", "TaskSetManager")),
)
PLANNING = ("analysis (Analyzer, CheckAnalysis)", "optimizer", "physical planning",
            "Spark Connect plan translation")
"""The phases that turn a run's plans into tasks: their cost grows with the plans, not the rows."""
FRAME = re.compile(r"^\s+([\w$.<>/+]+)\(")


def phases_while(pid: int, recording: Path, work: Callable[[], None]) -> Counter[str]:
    """Each phase's samples of the JVM ``pid`` while ``work`` runs, recorded to ``recording``."""
    jcmd = Path(java_executable()).resolve().with_name("jcmd")

    def command(*arguments: str) -> None:
        subprocess.run([str(jcmd), str(pid), *arguments], check=True, capture_output=True)

    command("JFR.configure", f"stackdepth={STACK_DEPTH}")
    command("JFR.start", "name=runs")
    try:
        work()
        command("JFR.dump", "name=runs", f"filename={recording}")
    finally:
        command("JFR.stop", "name=runs")
    return Counter(phase(frames) for frames in samples(recording))


def samples(recording: Path) -> Iterator[list[str]]:
    """Each execution sample of a JFR ``recording``, as ``stacks`` reads ``jfr print``'s text."""
    jfr = Path(java_executable()).resolve().with_name("jfr")
    printed = subprocess.run([str(jfr), "print", "--events", "jdk.ExecutionSample", "--stack-depth",
                              str(STACK_DEPTH), str(recording)], capture_output=True, text=True,
                             check=True).stdout
    return stacks(printed)


def stacks(printed: str) -> Iterator[list[str]]:
    """Each event's frames in ``jfr print``'s text, leaf first, as ``class.method``."""
    frames: list[str] = []
    for line in printed.splitlines():
        match = FRAME.match(line)
        if match:
            frames.append(match.group(1))
        elif line.startswith("}") and frames:
            yield frames
            frames = []


def phase(frames: list[str]) -> str:
    """The first of ``PHASES`` found from the leaf frame up; ``other`` if none."""
    for frame in frames:
        for name, marks in PHASES:
            if any(mark in frame for mark in marks):
                return name
    return "other"
