"""How every process logs: at LOG_LEVEL, as plain lines or (LOG_FORMAT=json) one JSON object a line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from restaurant_app.settings import Settings

TEXT_FORMAT = "[%(asctime)s] %(message)s"
TEXT_DATE_FORMAT = "%H:%M:%S"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter LOG_FORMAT names."""
    if settings.log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)


def configure_logging(settings: Settings) -> None:
    """Log to stderr at LOG_LEVEL in LOG_FORMAT: the set-up of every process but the Faust worker."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def faust_logging_config(settings: Settings) -> dict[str, Any]:
    """The Faust worker's ``logging_config``, merged into Faust's own: LOG_LEVEL rather than its
    ``-l``, to stderr, in Faust's coloured lines or (LOG_FORMAT=json) one JSON object a line."""
    handler = {"class": "colorlog.StreamHandler", "formatter": "colored"}
    config: dict[str, Any] = {"version": 1, "merge": True, "root": {"level": settings.log_level}}
    if settings.log_format == "json":
        config["formatters"] = {"json": {"()": JsonFormatter}}
        handler = {"class": "logging.StreamHandler", "formatter": "json"}
    config["handlers"] = {"default": handler}
    return config
