"""The documentation: a README a new operator reads first, links that lead somewhere, and every
setting in its configuration table."""

import re
from pathlib import Path

from bench.results import BENCHMARKS, QUOTE_END, QUOTE_START, RESULTS, Run
from restaurant_app.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCUMENTS = [README, PROJECT_ROOT / "ARCHITECTURE.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")
SCREEN = 60
"""Lines a first screen shows, about."""


def headings(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path``."""
    anchors, fenced = set(), False
    for line in path.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            title = re.sub(r"[^\w\- ]", "", re.sub(r"[`*]", "", line.lstrip("#").strip().lower()))
            anchors.add(title.replace(" ", "-"))
    return anchors


def broken_links(path: Path) -> list[str]:
    broken = []
    for match in LINK.finditer(path.read_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in headings(linked)):
            broken.append(target)
    return broken


def test_every_link_of_the_documentation_leads_to_a_file_and_heading_that_exist():
    assert {str(p.relative_to(PROJECT_ROOT)): broken_links(p) for p in DOCUMENTS if broken_links(p)} == {}


def test_a_broken_link_is_caught(tmp_path: Path):
    (tmp_path / "a.md").write_text("# A\n\n[there](b.md#a) [here](#a) [nowhere](#b) [web](https://example.org)\n")
    assert broken_links(tmp_path / "a.md") == ["b.md#a", "#b"]


def test_the_readme_fits_a_few_screens_with_its_configuration_on_the_first():
    lines = README.read_text().splitlines()
    assert 150 <= len(lines) <= 300
    assert lines.index("## Configuration") < SCREEN
    assert any(line.startswith("**Contents:**") for line in lines[:SCREEN])


def settings_variables() -> set[str]:
    """Every environment variable ``restaurant_app/settings.py`` reads."""
    source = (PROJECT_ROOT / "restaurant_app" / "settings.py").read_text()
    return set(re.findall(r"\b_[a-z_]+\(\s*\"([A-Z][A-Z0-9_]+)\"", source))


def test_every_setting_is_in_the_readmes_configuration_table():
    text = README.read_text()
    configuration = text[text.index("## Configuration"):]
    configuration = configuration[:configuration.index("\n## ", 3)]
    variables = settings_variables()
    assert {"KAFKA_BROKER", "DATABASE_URL", "LOG_LEVEL", "TOPIC_RETENTION_HOURS"} <= variables
    assert sorted(v for v in variables if f"`{v}`" not in configuration) == []


def test_the_readme_and_the_benchmarks_quote_the_run_that_wrote_bench_results():
    run = Run.read(RESULTS)
    for path, lines in ((README, run.readme()), (BENCHMARKS, run.benchmarks())):
        quoted = path.read_text().partition(QUOTE_START)[2].partition(QUOTE_END)[0]
        assert quoted == "\n" + "\n".join(lines) + "\n", f"{path.name}: run `python -m bench.results`"


def test_a_run_is_read_from_the_top_of_its_results(tmp_path: Path):
    results = tmp_path / "RESULTS.md"
    results.write_text("\n".join([
        "# Benchmark results", "",
        "Written by `python -m bench --budget` on 2026-12-01 17:30 UTC. Every figure is the", "median.", "",
        "| Machine | |", "| --- | --- |",
        "| Load average (1, 5, 15 min) | at start 0.50, 0.40, 0.30; at end 1.00, 0.90, 0.80 |", "",
        "## Targets", "", "| Target | Measured (median) | |", "| --- | --- | --- |",
        "| Two workers ingest at least 25,000 orders/s on 2 cores (#26) | 26,001 orders/s (one worker"
        " 14,000) | met |",
        "| p99 produce-to-commit at most 50 ms at 1,000 orders/s (#26) | 61 ms (min 55, max 70, 3 runs) |"
        " **missed** |", "", "## Ingest", ""]))
    run = Run.read(results)
    assert (run.command, run.when) == ("python -m bench --budget", "2026-12-01 17:30")
    assert run.load == "at start 0.50, 0.40, 0.30; at end 1.00, 0.90, 0.80"
    assert [met for _, _, met in run.targets] == ["met", "**missed**"]
    assert "two workers 26,001 orders/s; p99 produce-to-commit at 1,000 orders/s 61 ms." in run.readme()[0]
    assert "1 of 2 targets met" in run.readme()[0]
