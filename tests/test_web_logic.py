"""The web endpoints' logic without a server: the cached health probe and the /reports parameters."""

import asyncio
import dataclasses
import logging

import pytest
from multidict import MultiDict

from infra.stack import free_port
from restaurant_app.web import health
from restaurant_app.web.endpoint import MAX_PARAMETER_LENGTH, BadParameter
from restaurant_app.web.reports import report_range


class CountingCheck:
    """A check that takes ``seconds`` and counts how often it ran."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls = 0

    async def __call__(self) -> health.Status:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return {"ok": True, "call": self.calls}


async def test_concurrent_callers_share_one_check():
    check = CountingCheck()
    probe = health.CachedProbe(check, interval=60)
    answers = await asyncio.gather(*(probe.status() for _ in range(200)))
    assert check.calls == 1 and probe.runs == 1
    assert all(answer == {"ok": True, "call": 1} for answer in answers)


async def test_an_answer_is_reused_for_the_interval_then_checked_again():
    check = CountingCheck(seconds=0)
    probe = health.CachedProbe(check, interval=0.3)
    assert (await probe.status())["call"] == 1
    assert (await probe.status())["call"] == 1
    await asyncio.sleep(0.35)
    assert (await probe.status())["call"] == 2
    assert check.calls == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others_check():
    check = CountingCheck(seconds=0.2)
    probe = health.CachedProbe(check, interval=60)
    leaving = asyncio.ensure_future(probe.status())
    staying = asyncio.ensure_future(probe.status())
    await asyncio.sleep(0.05)
    leaving.cancel()
    assert (await staying) == {"ok": True, "call": 1}
    assert check.calls == 1


async def test_an_unreachable_kafka_is_named_without_details_which_go_to_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setattr(health, "settings", dataclasses.replace(health.settings, kafka_broker=address))
    with caplog.at_level(logging.WARNING, logger=health.__name__):
        status = await health.kafka_status()
    assert status == {"ok": False, "error": "Kafka is unreachable"}
    assert f"Kafka at {address} is unreachable (" in caplog.text


def query(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


GOOD_RANGE = (("from", "2026-11-20T14:00:00Z"), ("to", "2026-11-20T15:00:00Z"))


def test_a_good_range_is_accepted():
    granularity, start, end = report_range(query(*GOOD_RANGE, ("granularity", "hour")))
    assert granularity == "hour"
    assert (end - start).total_seconds() == 3600


@pytest.mark.parametrize(("pairs", "reason"), [
    ((*GOOD_RANGE, ("from", "2026-11-20T13:00:00Z")), "'from' is given more than once"),
    ((*GOOD_RANGE, ("granularity", "hour"), ("granularity", "day")), "'granularity' is given more than once"),
    ((("from", "2026-11-20T14:00:00Z" + " " * 100_000), GOOD_RANGE[1]),
     f"'from' is longer than {MAX_PARAMETER_LENGTH} characters"),
    ((*GOOD_RANGE, ("granularity", "w" * 100_000)), f"'granularity' is longer than {MAX_PARAMETER_LENGTH}"),
    ((("from", "x" * MAX_PARAMETER_LENGTH), GOOD_RANGE[1]), "'from' is not an ISO 8601 timestamp"),
    ((*GOOD_RANGE, ("granularity", "fortnight")), "'granularity' must be one of minute, hour, day"),
])
def test_a_bad_parameter_is_refused_with_a_short_reason_that_does_not_repeat_it(pairs: tuple, reason: str):
    with pytest.raises(BadParameter) as refused:
        report_range(query(*pairs))
    message = str(refused.value)
    assert reason in message
    assert len(message) < 120
    assert "xxxx" not in message and "fortnight" not in message and "www" not in message


async def test_a_listening_spark_connect_server_is_ok():
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    remote = f"sc://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        assert await health.spark_status(remote) == {"ok": True, "remote": remote}


async def test_an_unreachable_spark_connect_server_is_named_and_logged(caplog: pytest.LogCaptureFixture):
    remote = f"sc://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger=health.__name__):
        status = await health.spark_status(remote)
    assert status == {"ok": False, "remote": remote, "error": "Spark Connect is unreachable"}
    assert f"Spark Connect server at {remote} is unreachable (" in caplog.text


@pytest.mark.parametrize(("down", "status", "code"), [
    ((), "ok", 200), (("spark",), "degraded", 200), (("replica", "reports"), "degraded", 200),
    (("database",), "unavailable", 503), (("spark", "kafka"), "unavailable", 503),
    (("ingest",), "unavailable", 503),
])
def test_the_overall_status_names_the_parts_down_and_is_503_only_when_orders_are_not_stored(
    down: tuple[str, ...], status: str, code: int
):
    names = ("kafka", "database", "ingest", "reports", "replica", "spark")
    parts = {name: {"ok": name not in down} for name in names}
    assert health.overall(parts) == (status, code, [name for name in parts if name in down])
