"""The Grafana dashboard (ops/grafana/restaurant-sales.json): a dashboard Grafana imports, whose
every query names metrics the workers expose."""

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from restaurant_app.metrics import ConsumerLagCollector, ReplicaLagCollector, registry
from restaurant_app.settings import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "restaurant-sales.json"
OUR_METRIC = re.compile(r"\b(?:restaurant|faust|process)_[a-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its variables' queries."""
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return exprs + [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in OUR_METRIC.findall(expr)}


def series_names(exposition: str) -> set[str]:
    """The series names a query may use on this exposition: histograms' ``_bucket``, ``_sum``, ``_count``."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.update([name + suffix for suffix in HISTOGRAM_SERIES] if kind == "histogram" else [name])
    return names


def worker_exposition() -> str:
    """What a worker with a read replica exposes, without a worker: its registry, and the
    collectors ``GET /metrics`` adds, fed with made-up lags."""
    import restaurant_app.ingest_state  # registers restaurant_ingest_held_seconds
    import restaurant_app.worker  # noqa: F401  (registers Faust's sensor)

    scraped = CollectorRegistry()
    scraped.register(ConsumerLagCollector(lambda: {"topic": "orders", "partitions": [
        {"partition": 0, "highwater": 3, "committed": 1, "lag": 2}]}))
    replica = ReplicaLagCollector()
    replica.status = {"ok": True, "in_recovery": True, "bytes_behind": 0, "lag_seconds": 0.0}
    scraped.register(replica)
    return generate_latest(registry).decode() + generate_latest(scraped).decode()


def test_every_metric_the_dashboard_queries_is_exposed():
    named = metric_names(queries(dashboard()))
    assert len(named) >= 12
    assert named - series_names(worker_exposition()) == set()


def test_a_dashboard_naming_a_metric_nobody_exposes_is_caught(tmp_path: Path):
    board = dashboard()
    board["panels"][1]["targets"][0]["expr"] = "sum(rate(restaurant_orders_stored[1m]))"  # no _total
    (tmp_path / "board.json").write_text(json.dumps(board))
    named = metric_names(queries(dashboard(tmp_path / "board.json")))
    assert named - series_names(worker_exposition()) == {"restaurant_orders_stored"}


def test_the_dashboard_covers_what_an_operator_watches():
    named = metric_names(queries(dashboard()))
    for watched in ("restaurant_orders_stored_total", "restaurant_consumer_lag_messages",
                    "restaurant_ingest_held_seconds", "restaurant_report_freshness_seconds",
                    "restaurant_report_last_success_timestamp_seconds", "restaurant_rejections_total",
                    "restaurant_replica_lag_seconds"):
        assert watched in named


def test_the_dashboard_is_one_grafana_can_import():
    board = dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        place = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= place.keys() and place["x"] + place["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert [t["refId"] for t in panel["targets"]] == list("ABCDEFGH"[:len(panel["targets"])])
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}
    assert all('job=~"$job"' in expr for expr in queries(board)[:-1])
