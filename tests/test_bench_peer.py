"""The Quix Streams peer is set up like the worker: its batches are the worker's size."""

from types import SimpleNamespace

import pytest

from bench.quix_peer import COMMIT_INTERVAL, peer_env


def test_the_peer_checkpoints_every_batch_max_orders_messages(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATCH_MAX_ORDERS", "1234")
    stack = SimpleNamespace(bootstrap_servers="127.0.0.1:9092")
    env = peer_env(stack, "postgresql://bench:secret@127.0.0.1:5433/quix_1", "orders", "quix-1")  # type: ignore[arg-type]
    assert (env["COMMIT_EVERY"], env["COMMIT_INTERVAL"]) == ("1234", str(COMMIT_INTERVAL))
    assert (env["PGPORT"], env["PGDATABASE"], env["PGUSER"], env["PGPASSWORD"]) == (
        "5433", "quix_1", "bench", "secret")
