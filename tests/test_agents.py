"""The agents in memory, through Faust's test agents (``agent.test_context()``)."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError

import agents.generator
import agents.persistence
from agents.generator import PUBLISH_ATTEMPTS, place_orders
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

        async def send(key: str, value: Order) -> asyncio.Future:
            published.append(value)
            await agent.put(value.dumps(), key=key.encode())
            return acknowledged()

        monkeypatch.setattr(orders_topic, "send", send)
        await place_orders()
        await place_orders()
        await eventually(lambda: len(fake_db.orders) == len(published))
    assert published, "the timer published nothing"
    assert fake_db.rejections == []
    assert set(fake_db.orders) == {o.order_id for o in published}


def acknowledged() -> asyncio.Future:
    """A delivery Kafka has acknowledged."""
    delivery = asyncio.get_running_loop().create_future()
    delivery.set_result(None)
    return delivery


class StubTopic:
    """Stands in for ``orders_topic.send``: records every order sent and fails the planned sends.

    Each send takes the next of ``failures``: a Kafka error fails the delivery, as a broker that
    never acknowledged would; any other exception is raised by ``send`` itself.
    """

    def __init__(self) -> None:
        self.sent: list[Order] = []
        self.failures: list[Exception] = []

    async def send(self, key: str, value: Order) -> asyncio.Future:
        self.sent.append(value)
        failure = self.failures.pop(0) if self.failures else None
        if failure is None:
            return acknowledged()
        if not isinstance(failure, KafkaTimeoutError):
            raise failure
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_exception(failure)
        return delivery


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> StubTopic:
    """The generator publishes three orders a tick to a stub topic, and retries at once."""
    stub = StubTopic()
    monkeypatch.setattr(orders_topic, "send", stub.send)
    monkeypatch.setattr(agents.generator, "generator", OrderGenerator(seed=9))
    monkeypatch.setattr(agents.generator, "settings", replace(agents.generator.settings, orders_per_tick=3))
    monkeypatch.setattr(agents.generator, "FIRST_RETRY_SECONDS", 0.001)
    return stub


async def test_a_failed_publication_is_logged_and_retried_until_kafka_acknowledges_it(
    topic: StubTopic, caplog: pytest.LogCaptureFixture
):
    topic.failures = [KafkaTimeoutError("batch expired"), ProducerSendError("no metadata")]
    placed = await place_orders()
    assert len(placed) >= 3
    first = placed[0].order_id
    assert [o.order_id for o in topic.sent] == [first, first, *(o.order_id for o in placed)]
    assert topic.sent[0] is topic.sent[1] is topic.sent[2], "a retry sends the same order again"
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(retries) == 2 and all(first in message for message in retries)
    assert "batch expired" in retries[0] and "no metadata" in retries[1]


async def test_an_order_kafka_never_acknowledges_ends_the_tick_not_the_timer(
    topic: StubTopic, caplog: pytest.LogCaptureFixture
):
    topic.failures = [KafkaTimeoutError()] * PUBLISH_ATTEMPTS
    assert await place_orders() == []
    assert len(topic.sent) == PUBLISH_ATTEMPTS
    assert len({o.order_id for o in topic.sent}) == 1, "the other orders of the tick were not sent"
    assert "Gave up on this tick after 0 of" in caplog.text
    assert len(await place_orders()) >= 3, "the next tick did not carry on"


async def test_an_unexpected_failure_is_logged_and_the_next_tick_carries_on(
    topic: StubTopic, caplog: pytest.LogCaptureFixture
):
    topic.failures = [RuntimeError("a bug")]
    assert await place_orders() == []
    assert "The order generator failed after placing 0 of" in caplog.text
    assert "a bug" in caplog.text
    assert len(await place_orders()) >= 3
