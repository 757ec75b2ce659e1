"""The worker's web server: Faust's statistics and our health endpoint."""

import json
import urllib.error
import urllib.request

import pytest

from infra.scratch import WorkerProcess
from infra.stack import free_port

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_health_is_ok_when_kafka_and_postgres_answer(worker: WorkerProcess):
    worker.start()
    status, body = get(f"{worker.url}/health")
    assert status == 200
    assert body == {"status": "ok", "kafka": {"ok": True, "brokers": 1}, "database": {"ok": True}}


def test_health_is_503_when_postgres_is_unreachable(worker: WorkerProcess):
    worker.env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    worker.start()
    status, body = get(f"{worker.url}/health")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["kafka"]["ok"] is True
    assert body["database"]["ok"] is False
    assert "Connection refused" in body["database"]["error"]


def test_faust_stats_are_served_at_stats(worker: WorkerProcess):
    worker.start()
    status, body = get(f"{worker.url}/stats/")
    assert status == 200
    sensor = body["Sensor0"]
    assert "messages_received_total" in sensor
    assert "events_total" in sensor
