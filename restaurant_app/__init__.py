"""Real-time sales analytics for restaurants: orders through Kafka into PostgreSQL."""

from restaurant_app.app import app

__all__ = ["app"]
