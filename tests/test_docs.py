"""The documentation: a README a new operator reads first, links that lead somewhere, and every
setting in its configuration table."""

import re
from pathlib import Path

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
