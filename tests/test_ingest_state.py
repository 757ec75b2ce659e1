"""How long a held batch has been held, as restaurant_ingest_held_seconds gives it."""

import time

from restaurant_app.ingest_state import IngestState
from restaurant_app.metrics import registry


def test_held_seconds_count_from_the_hold_once_it_shows_and_return_to_zero():
    state = IngestState(alarm_seconds=60)
    state.held("PostgreSQL is unavailable", since=time.time() - 30)
    assert state.held_seconds() == 0  # not yet past the alarm: /health says nothing either
    state.held("PostgreSQL is unavailable", since=time.time() - 90)
    assert 90 <= state.held_seconds() < 100
    state.flowing()
    assert state.held_seconds() == 0


def test_the_gauge_is_in_the_registry_at_zero_while_orders_flow():
    assert registry.get_sample_value("restaurant_ingest_held_seconds") == 0
