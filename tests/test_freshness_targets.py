"""The freshness bench's targets: one store's minute within the grace and a second, a chain's within 10 s."""

import pytest

from bench.freshness import freshness_targets

FIGURES = {"delays": [5.5, 5.8, 6.5, 9.0], "client": [0.3, 0.4], "server": [0.5, 0.9]}


def test_one_store_is_held_to_the_grace_and_a_second(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REPORT_GRACE_SECONDS", "8")
    (name, _, met), (cpu_name, cpu, cpu_met) = freshness_targets(FIGURES)
    assert "at most 9 s" in name and met  # p95 of the four delays is 9.0
    monkeypatch.setenv("REPORT_GRACE_SECONDS", "5")
    (name, _, met), _ = freshness_targets(FIGURES)
    assert "at most 6 s" in name and not met
    assert "1 CPU-second" in cpu_name and cpu.startswith("1.05 s") and not cpu_met


def test_a_chain_is_held_to_ten_seconds_for_every_store(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REPORT_GRACE_SECONDS", "5")
    [(name, _, met)] = freshness_targets(FIGURES, stores=50)
    assert "all 50 stores" in name and "at most 10 s" in name and met
    [(_, measured, met)] = freshness_targets({**FIGURES, "delays": [5.0, None]}, stores=50)
    assert not met and "1 of 2 minutes" in measured
