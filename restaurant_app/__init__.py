"""Real-time sales analytics for restaurants: orders through Kafka into PostgreSQL.

Importing the package is light: the Faust app (with its topics and connection pool) is built
only when ``restaurant_app.app`` is first read, as ``faust -A restaurant_app`` does.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faust import App

__all__ = ["app"]


def __getattr__(name: str) -> "App":
    if name == "app":
        from restaurant_app.worker import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
