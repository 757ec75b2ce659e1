"""The one way to write a web endpoint: declared query parameters, one error class, one JSON shape.

An endpoint names its parameters (``Whole``, ``Choice``, ``Moment``, ``Store``) and a ``fetch`` that
reads the database; ``answer`` checks the parameters and answers 200 with the data, 400 with
``{"error": reason}`` for a bad parameter (or one the fetch finds wrong, such as an unknown store),
or 503 with ``{"error": ...}`` while PostgreSQL is away.
"""

import csv
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from faust import web
from multidict import MultiMapping

from restaurant_app.database import DatabaseUnavailable
from restaurant_app.errors import PipelineError
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.validation import MAX_STORE_ID_LENGTH, STORE_ID
from restaurant_app.web.rows import json_ready

WHOLE_NUMBER = re.compile(r"\d{1,9}", re.ASCII)
MAX_PARAMETER_LENGTH = 64
EXAMPLE_MOMENT = "2026-11-29T14:00:00-03:00"
NO_STORE = {"Cache-Control": "no-store"}
CSV_NUMBERS = ("br", "intl")


class BadParameter(PipelineError, ValueError):
    """A query parameter is unknown, repeated, missing or wrong; the message says which and why."""


class Parameter(Protocol):
    def read(self, name: str, raw: str | None) -> Any: ...


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


@dataclass(frozen=True)
class Choice:
    """One of a few words; ``default`` when absent (None: the endpoint decides)."""

    options: tuple[str, ...]
    default: str | None = None

    def read(self, name: str, raw: str | None) -> str | None:
        if raw is None or raw == "":
            return self.default
        if raw not in self.options:
            raise BadParameter(f"'{name}' must be one of {', '.join(self.options)}")
        return raw


@dataclass(frozen=True)
class Moment:
    """A required ISO 8601 timestamp; without a UTC offset it is read on ``zone``'s clock."""

    zone: tzinfo

    def read(self, name: str, raw: str | None) -> datetime:
        if not raw:
            raise BadParameter(f"'{name}' is required: an ISO 8601 timestamp such as {EXAMPLE_MOMENT}")
        text = raw.strip()
        if "T" in text:
            text = text.replace(" ", "+")  # an unescaped '+' in a URL arrives as a space
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise BadParameter(f"'{name}' is not an ISO 8601 timestamp such as {EXAMPLE_MOMENT}") from None
        return moment.replace(tzinfo=self.zone) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class Store:
    """A store's id, as orders name it; absent or empty, the whole chain (``CHAIN_STORE``)."""

    def read(self, name: str, raw: str | None) -> str:
        if not raw:
            return CHAIN_STORE
        if not STORE_ID.fullmatch(raw):
            raise BadParameter(
                f"'{name}' must be a store's id (1 to {MAX_STORE_ID_LENGTH} lowercase letters, digits,"
                f" '-' or '_'), or empty for the whole chain; got {raw!r:.40}"
            )
        return raw


def single_value(query: MultiMapping[str] | Mapping[str, str], name: str) -> str | None:
    """The one value of parameter ``name``, if given; at most ``MAX_PARAMETER_LENGTH`` characters."""
    values = query.getall(name, []) if isinstance(query, MultiMapping) else (
        [query[name]] if name in query else [])
    if len(values) > 1:
        raise BadParameter(f"'{name}' is given more than once")
    if values and len(values[0]) > MAX_PARAMETER_LENGTH:
        raise BadParameter(f"'{name}' is longer than {MAX_PARAMETER_LENGTH} characters")
    return values[0] if values else None


def parse(query: MultiMapping[str] | Mapping[str, str], spec: Mapping[str, Parameter]) -> dict[str, Any]:
    """The parameters ``spec`` names, read from ``query``; any other parameter is refused."""
    unknown = sorted(set(query) - set(spec))
    if unknown:
        takes = f"takes {', '.join(spec)}" if spec else "takes no parameters"
        raise BadParameter(f"unknown parameter {unknown[0]!r:.40}; this endpoint {takes}")
    return {name: kind.read(name, single_value(query, name)) for name, kind in spec.items()}


Fetch = Callable[[dict[str, Any]], Awaitable[Any]]
Check = Callable[[dict[str, Any]], dict[str, Any]]


def error(view: web.View, reason: str, status: int, headers: Mapping[str, str] | None = None,
          **details: Any) -> web.Response:
    """The one error shape of every JSON endpoint: ``{"error": reason}``, with any ``details``
    (such as each rejected order of a batch) beside it."""
    return view.json({"error": reason, **details}, status=status, headers={**NO_STORE, **(headers or {})})


async def answer(
    view: web.View, request: web.Request, spec: Mapping[str, Parameter], fetch: Fetch, *,
    unavailable: str, zone: tzinfo | None = None, check: Check | None = None,
    respond: Callable[[Any], web.Response] | None = None,
) -> web.Response:
    """Check the parameters (each, then together with ``check``), fetch, and answer 200 (JSON,
    or what ``respond`` makes of the data), 400 (bad parameter) or 503 (``unavailable``)."""
    try:
        params = parse(request.query, spec)
        params = check(params) if check else params
    except BadParameter as exc:
        return error(view, str(exc), 400)
    try:
        body = await fetch(params)
    except BadParameter as exc:
        return error(view, str(exc), 400)
    except (DatabaseUnavailable, TimeoutError):
        return error(view, unavailable, 503)
    if respond:  # an answer other than JSON, such as CSV
        return respond(body)
    return view.json(json_ready(body, zone), headers=NO_STORE)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], numbers: str) -> str:
    """Rows as CSV: ``br`` numbers (``;`` between fields, ``1234,50``) or ``intl`` (``,`` and
    ``1234.50``); amounts exact, without thousands separators, so that spreadsheets read them."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if numbers == "br" else ",", lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([amount_text(value, numbers) if isinstance(value, Decimal | float) else value
                         for value in row])
    return out.getvalue()


def amount_text(value: Decimal | float, numbers: str) -> str:
    text = format(value, "f")
    return text.replace(".", ",") if numbers == "br" else text


def csv_download(view: web.View, name: str, text: str) -> web.Response:
    """``text`` as a CSV file named ``name``, with the byte-order mark spreadsheets look for."""
    return view.bytes(("\ufeff" + text).encode(), content_type="text/csv",
                      headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE})
