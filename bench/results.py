"""Collecting figures over runs and writing them as markdown tables in ``bench/RESULTS.md``; the
targets of its run quoted in the README and docs/benchmarks.md (``python -m bench.results`` quotes
them again after a hand edit)."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from infra.postgres import POSTGRES_BIN_PATH
from restaurant_app.java_runtime import java_executable
from restaurant_app.settings import DEFAULT_JARS_DIR, PROJECT_ROOT

ANALYSIS_MARKER = "<!-- Everything below this line is written by hand and kept by `make bench`. -->"
RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
README = PROJECT_ROOT / "README.md"
BENCHMARKS = PROJECT_ROOT / "docs" / "benchmarks.md"
QUOTE_START = "<!-- Quoted from bench/RESULTS.md by the bench: edit there, not here. -->"
QUOTE_END = "<!-- End of the quote from bench/RESULTS.md. -->"
HEADLINES = (
    ("Two workers ingest", "two workers"),
    ("Quix Streams peer, two processes", "against two Quix Streams processes"),
    ("Kafka broker (one worker", "CPU per stored order (one worker)"),
    ("p99 produce-to-commit", "p99 produce-to-commit at 1,000 orders/s"),
    ("Closed minute's complete report", "a closed minute's report"),
)
"""(part of a target in RESULTS.md, what the README calls it): the README's few figures."""


@dataclass(frozen=True)
class Figure:
    """One row of a results table: which key of the per-run figures, how to label and format it."""

    key: str
    label: str
    digits: int = 0


@dataclass
class Section:
    """A titled table of figures, each the median, min and max over the runs."""

    title: str
    intro: str
    figures: list[Figure]
    runs: list[dict[str, float]] = field(default_factory=list)

    def table(self) -> list[str]:
        lines = [f"| {self.title} | median | min | max | runs |", "| --- | ---: | ---: | ---: | ---: |"]
        for figure in self.figures:
            values = [run[figure.key] for run in self.runs if figure.key in run]
            if values:
                cells = [_number(v, figure.digits)
                         for v in (statistics.median(values), min(values), max(values))]
                lines.append(f"| {figure.label} | {' | '.join(cells)} | {len(values)} |")
        return lines

    def markdown(self) -> list[str]:
        return [f"## {self.title}", "", self.intro, "", *self.table(), ""]


@dataclass
class Grid:
    """A titled table with one row per size and one "median (min-max)" cell per figure."""

    title: str
    intro: str
    row_label: str
    figures: list[Figure]
    rows: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def table(self) -> list[str]:
        header = " | ".join([self.row_label, *(f.label for f in self.figures)])
        lines = [f"| {header} |", "| ---: " * (len(self.figures) + 1) + "|"]
        for size, values in self.rows.items():
            cells = [_spread(values.get(f.key, []), f.digits) for f in self.figures]
            lines.append(f"| {size:,} | {' | '.join(cells)} |")
        return lines

    def markdown(self) -> list[str]:
        return [f"## {self.title}", "", self.intro, "", *self.table(), ""]


@dataclass
class Table:
    """A titled table of cells as they are written: one row per thing measured."""

    title: str
    intro: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> list[str]:
        return [f"## {self.title}", "", self.intro, "", f"| {' | '.join(self.header)} |",
                "| --- " + "| ---: " * (len(self.header) - 1) + "|",
                *(f"| {' | '.join(row)} |" for row in self.rows), ""]


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_line(run: dict[str, float]) -> str:
    """One run's figures on one line."""
    return ", ".join(f"{key} {value:,.2f}" for key, value in run.items())


def run_summary(runs: list[dict[str, float]]) -> str:
    """Each figure of ``runs``: its median, min and max, a line each."""
    lines = []
    for key in runs[0]:
        values = [run[key] for run in runs]
        lines.append(f"{key}: median {median(values):,.2f} (min {min(values):,.2f},"
                     f" max {max(values):,.2f}, {len(values)} runs)")
    return "\n".join(lines)


def _spread(values: list[float], digits: int) -> str:
    if not values:
        return "no result"
    if len(values) == 1:
        return f"{_number(values[0], digits)} (1 run)"
    low, high = _number(min(values), digits), _number(max(values), digits)
    return f"{_number(median(values), digits)} ({low}-{high}, {len(values)} runs)"


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _command_output(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).strip().splitlines()[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    kafka = sorted(DEFAULT_JARS_DIR.glob("kafka_*.jar"))
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("faust-streaming", "aiokafka", "psycopg", "pyspark")
    )
    return [
        ("CPU", f"{os.cpu_count()} cores, {_cpu_model()}"),
        ("Memory", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("Packages", packages),
        ("Kafka", kafka[-1].stem.split("-", 1)[1] if kafka else "unknown"),
        ("PostgreSQL", _command_output([str(POSTGRES_BIN_PATH / "postgres"), "--version"])),
        ("Java", _command_output([java_executable(), "-version"])),
    ]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


@dataclass
class Report:
    """The whole results file."""

    command: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_at_start: str = field(default_factory=load_average)
    sections: list[Section | Grid | Table] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)
    """(target, what was measured, whether it was met)."""
    notes: list[str] = field(default_factory=list)

    def markdown(self, load_at_end: str) -> str:
        lines = [
            "# Benchmark results",
            "",
            f"Written by `{self.command}` on {self.started:%Y-%m-%d %H:%M} UTC. Every figure is the",
            "median of the runs shown, with the smallest and largest value.",
            "",
            "| Machine | |",
            "| --- | --- |",
            *(f"| {name} | {value} |" for name, value in machine()),
            f"| Load average (1, 5, 15 min) | at start {self.load_at_start}; at end {load_at_end} |",
            "",
        ]
        if self.targets:
            lines.extend(["## Targets", "", "| Target | Measured (median) | |", "| --- | --- | --- |"])
            lines.extend(f"| {target} | {measured} | {'met' if met else '**missed**'} |"
                         for target, measured, met in self.targets)
            lines.append("")
        for section in self.sections:
            lines.extend(section.markdown())
        if self.notes:
            lines.extend(["## Notes on this run", "", *(f"- {note}" for note in self.notes), ""])
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        """Write the tables, keeping the hand-written analysis after the marker if there is one;
        the project's own results are quoted in the README and docs/benchmarks.md too."""
        kept = ""
        if path.exists():
            _, marker, after = path.read_text().partition(ANALYSIS_MARKER)
            kept = marker + after if marker else ""
        text = self.markdown(load_average())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{text}\n{kept}" if kept else text)
        if path.resolve() == RESULTS.resolve():
            quote_run(path)


@dataclass(frozen=True)
class Run:
    """What the top of ``bench/RESULTS.md`` says about the run that wrote it."""

    command: str
    when: str
    load: str
    targets: list[tuple[str, str, str]]
    """(target, measured, met or **missed**)."""

    @classmethod
    def read(cls, path: Path = RESULTS) -> Run:
        top = path.read_text().partition(ANALYSIS_MARKER)[0]
        written = re.search(r"^Written by `(.+)` on (.+) UTC\.", top, re.MULTILINE)
        load = re.search(r"^\| Load average \(1, 5, 15 min\) \| (.+) \|$", top, re.MULTILINE)
        if written is None or load is None:
            raise ValueError(f"{path} does not begin as the bench writes it")
        lines = top.splitlines()
        targets = []
        if "## Targets" in lines:
            for line in lines[lines.index("## Targets") + 4:]:
                if not line.startswith("| "):
                    break
                target, measured, met = (cell.strip() for cell in line[2:-2].split(" | "))
                targets.append((target, measured, met))
        return cls(written.group(1), written.group(2), load.group(1), targets)

    def readme(self) -> list[str]:
        """A few lines for the README: the run, its headline figures, how many targets it met."""
        met = sum(state == "met" for _, _, state in self.targets)
        figures = [f"{name} {measured.split(' (')[0].split(':')[0]}"
                   for part, name in HEADLINES
                   for target, measured, _ in self.targets if part in target]
        headline = "; ".join(figures) or "no headline figure"
        return [f"**How fast:** measured by `{self.command}` on {self.when} UTC on this project's"
                f" 2-core machine ([bench/RESULTS.md](bench/RESULTS.md)): {headline}."
                f" {met} of {len(self.targets)} targets met"
                " ([each target](docs/benchmarks.md#the-latest-run))."]

    def benchmarks(self) -> list[str]:
        """For docs/benchmarks.md: the run and its targets table."""
        return [f"Measured by `{self.command}` on {self.when} UTC (load average {self.load});"
                " [bench/RESULTS.md](../bench/RESULTS.md) holds each run's figures.", "",
                "| Target | Measured (median) | |", "| --- | --- | --- |",
                *(f"| {target} | {measured} | {met} |" for target, measured, met in self.targets), ""]


def quote(path: Path, lines: list[str]) -> None:
    """Put ``lines`` between the quote markers of ``path``, in place of what was there."""
    before, start, rest = path.read_text().partition(QUOTE_START)
    _, end, after = rest.partition(QUOTE_END)
    if not (start and end):
        raise RuntimeError(f"{path} has no quote markers for the bench's figures")
    path.write_text("\n".join([before + start, *lines, end + after]))


def quote_run(path: Path = RESULTS) -> None:
    """Quote the run of ``path`` in the README and docs/benchmarks.md."""
    run = Run.read(path)
    quote(README, run.readme())
    quote(BENCHMARKS, run.benchmarks())


if __name__ == "__main__":
    quote_run()
