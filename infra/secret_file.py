"""Secrets that ``make run`` makes on first start: random, kept in files only their owner can read."""

import os
import secrets
from pathlib import Path

from infra.java import StackError


def make_secret(path: Path) -> None:
    """Unless ``path`` holds one, write a new random secret there, readable by its owner only."""
    _write_once(path, secrets.token_urlsafe(24) + "\n")


def make_spark_auth_file(path: Path) -> None:
    """Unless ``path`` exists, write a Spark properties file, readable by its owner only, that
    turns on ``spark.authenticate`` with a new shared secret and makes the web UIs read-only."""
    _write_once(path, "spark.authenticate=true\n"
                      f"spark.authenticate.secret={secrets.token_urlsafe(24)}\n"
                      "spark.ui.killEnabled=false\n")


def read_secret(path: Path, what: str) -> str:
    """The secret kept in ``path``; ``what`` names it in the error when the file is missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise StackError(f"{path} is missing: {what} has not been started yet, or the file"
                         " was deleted.") from None


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, mode 0600; one that exists keeps its text and gets mode 0600
    again (opened up by hand)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return
    with os.fdopen(fd, "w") as file:
        file.write(text)
