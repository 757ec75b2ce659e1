"""Query parameters of the dashboard's endpoints: whole numbers within bounds, nothing unknown."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from restaurant_app.errors import PipelineError

WHOLE_NUMBER = re.compile(r"\d{1,9}", re.ASCII)


class BadParameter(PipelineError, ValueError):
    """A query parameter is unknown or out of range; the message says which and why."""


@dataclass(frozen=True)
class Whole:
    """A whole-number parameter: its value when absent, and the range it must fall in."""

    default: int
    low: int
    high: int

    def read(self, name: str, raw: str | None) -> int:
        if raw is None:
            return self.default
        if not WHOLE_NUMBER.fullmatch(raw) or not self.low <= int(raw) <= self.high:
            raise BadParameter(
                f"'{name}' must be a whole number from {self.low} to {self.high}, got {raw!r:.40}"
            )
        return int(raw)


def parse(query: Mapping[str, str], spec: Mapping[str, Whole]) -> dict[str, int]:
    """The parameters ``spec`` names, read from ``query``; any other parameter is refused."""
    unknown = sorted(set(query) - set(spec))
    if unknown:
        takes = f"takes {', '.join(spec)}" if spec else "takes no parameters"
        raise BadParameter(f"unknown parameter {unknown[0]!r:.40}; this endpoint {takes}")
    return {name: whole.read(name, query.get(name)) for name, whole in spec.items()}
