"""The rooms' rules, read from the source: one root for our exceptions, and no import upward."""

import ast
import builtins
import configparser
from pathlib import Path

from restaurant_app.settings import PROJECT_ROOT

PACKAGES = ("restaurant_app", "agents", "spark_reports", "infra")
BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception)
}
"""The errors; a signal's class (``BaseException``, like ``KeyboardInterrupt``) is not one."""


def exception_classes(path: Path) -> list[tuple[str, list[str]]]:
    """(name, base names) of each exception class in ``path`` but the root."""
    classes = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            if (BUILTIN_EXCEPTIONS | {"PipelineError"}) & set(bases) and node.name != "PipelineError":
                classes.append((f"{path.relative_to(PROJECT_ROOT)}:{node.name}", bases))
    return classes


def test_every_exception_the_product_defines_is_a_pipeline_error():
    found = [c for package in PACKAGES for p in sorted((PROJECT_ROOT / package).rglob("*.py"))
             for c in exception_classes(p)]
    assert len(found) >= 10, found
    assert [name for name, bases in found if "PipelineError" not in bases] == []


def imported_packages(path: Path) -> set[str]:
    """The top-level packages that ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_agents_and_the_tools_around_them_import_agents():
    upward = [str(p.relative_to(PROJECT_ROOT)) for package in ("restaurant_app", "spark_reports", "infra")
              for p in sorted((PROJECT_ROOT / package).rglob("*.py")) if "agents" in imported_packages(p)]
    assert upward == []


def test_the_license_file_is_the_license_setup_cfg_names():
    config = configparser.ConfigParser(interpolation=None)
    config.read(PROJECT_ROOT / "setup.cfg")
    named = config["metadata"]["license"]
    assert (PROJECT_ROOT / "LICENSE").read_text().splitlines()[0] == f"{named} License"
