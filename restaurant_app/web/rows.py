"""Rows from PostgreSQL in JSON terms, the same for every endpoint."""

from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any


def json_ready(value: Any, zone: tzinfo | None = None) -> Any:
    """Amounts as exact decimal strings (``"1234.50"``), moments in ISO 8601, on ``zone``'s clock if given."""
    if isinstance(value, dict):
        return {key: json_ready(item, zone) for key, item in value.items()}
    if isinstance(value, list):
        return [json_ready(item, zone) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return (value.astimezone(zone) if zone else value).isoformat()
    return value
