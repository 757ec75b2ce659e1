import asyncio

import pytest

from restaurant_app.retry import Backoff


async def test_pauses_double_up_to_the_longest(monkeypatch: pytest.MonkeyPatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    backoff = Backoff(first=0.5, longest=3.0)
    for _ in range(5):
        await backoff.wait()
    assert slept == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay == 3.0
