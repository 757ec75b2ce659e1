"""The agents in memory, through Faust's test agents (``agent.test_context()``)."""

import asyncio
import json
from collections.abc import Callable

import pytest

import agents.generator
import agents.persistence
from agents.generator import place_orders
from agents.order_sink import InMemoryOrderSink, Rejection
from agents.persistence import persist_orders
from restaurant_app import database as database_module
from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import orders_topic


@pytest.fixture
def fake_db(monkeypatch: pytest.MonkeyPatch) -> InMemoryOrderSink:
    """The agent stores into the in-memory sink, which can be 'down' for a while."""
    sink = InMemoryOrderSink()
    monkeypatch.setattr(agents.persistence, "sink", sink)
    monkeypatch.setattr(database_module, "FIRST_RETRY_SECONDS", 0.01)
    return sink


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> list[Rejection]:
    sent: list[Rejection] = []

    async def send(rejection: Rejection) -> None:
        sent.append(rejection)

    monkeypatch.setattr(agents.persistence, "send_to_dead_letter", send)
    return sent


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_valid_orders_are_saved(fake_db: InMemoryOrderSink, dead_letters: list):
    generator = OrderGenerator(seed=1)
    orders = [generator.order() for _ in range(5)]
    async with persist_orders.test_context() as agent:
        for order in orders:
            await agent.put(order.dumps(), key=order.order_id.encode())
        await eventually(lambda: len(fake_db.orders) == 5)
    assert fake_db.orders.keys() == {o.order_id for o in orders}
    assert fake_db.orders[orders[0].order_id].total == orders[0].total
    assert dead_letters == []


async def test_bad_messages_are_rejected_and_good_ones_after_them_still_saved(
    fake_db: InMemoryOrderSink, dead_letters: list
):
    good = OrderGenerator(seed=2).order()
    bad = [b"not json", b'{"order_id": "x"}', json.dumps({**json.loads(good.dumps()), "total": "0.01"})]
    async with persist_orders.test_context() as agent:
        for raw in bad:
            await agent.put(raw.encode() if isinstance(raw, str) else raw)
        await agent.put(good.dumps())
        await eventually(lambda: good.order_id in fake_db.orders)
    assert [r.raw for r in fake_db.rejections] == [b if isinstance(b, bytes) else b.encode() for b in bad]
    assert [r.reason for r in dead_letters] == [r.reason for r in fake_db.rejections]
    assert "not valid JSON" in fake_db.rejections[0].reason
    assert "missing field" in fake_db.rejections[1].reason
    assert "does not equal the sum" in fake_db.rejections[2].reason
    assert [r.offset for r in fake_db.rejections] == [0, 1, 2]


async def test_the_same_order_twice_is_saved_once(fake_db: InMemoryOrderSink, dead_letters: list):
    order = OrderGenerator(seed=3).order()
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await agent.put(order.dumps())
        await eventually(lambda: fake_db.saves >= 1)
        await asyncio.sleep(0.2)
    assert list(fake_db.orders) == [order.order_id]


async def test_a_database_outage_is_waited_out_without_losing_the_batch(
    fake_db: InMemoryOrderSink, dead_letters: list
):
    fake_db.outages = 3
    order = OrderGenerator(seed=4).order()
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await eventually(lambda: order.order_id in fake_db.orders)
    assert fake_db.outages == 0
    assert fake_db.saves == 1


async def test_the_generator_timer_feeds_orders_the_consumer_accepts(
    fake_db: InMemoryOrderSink, dead_letters: list, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(agents.generator, "generator", OrderGenerator(seed=9))
    async with persist_orders.test_context() as agent:
        published: list[Order] = []

        async def send(key: str, value: Order) -> None:
            published.append(value)
            await agent.put(value.dumps(), key=key.encode())

        monkeypatch.setattr(orders_topic, "send", send)
        await place_orders()
        await place_orders()
        await eventually(lambda: len(fake_db.orders) == len(published))
    assert published, "the timer published nothing"
    assert fake_db.rejections == []
    assert set(fake_db.orders) == {o.order_id for o in published}
