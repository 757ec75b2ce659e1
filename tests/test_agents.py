"""The agents in memory, through Faust's test agents (``agent.test_context()``)."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace

import msgspec
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError
from faust.types import Message

import agents.generator
import agents.persistence
from agents.generator import PUBLISH_ATTEMPTS, place_orders
from agents.persistence import VALIDATE_BETWEEN_YIELDS, leading_run, persist_orders, validated
from restaurant_app import database as database_module
from restaurant_app import dead_letters as dead_letters_module
from restaurant_app.batches import Taken
from restaurant_app.fast_consumer import MessageBatch, message_bytes, messages_of
from restaurant_app.models import Order
from restaurant_app.order_sink import InMemoryOrderSink, Rejection, RowsRefused
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import orders_topic


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> InMemoryOrderSink:
    """The agent stores into the in-memory sink, which can be 'down' for a while."""
    memory = InMemoryOrderSink()
    monkeypatch.setattr(agents.persistence, "sink", memory)
    monkeypatch.setattr(database_module, "FIRST_RETRY_SECONDS", 0.01)
    return memory


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> list[Rejection]:
    sent: list[Rejection] = []

    async def publish(rejections: list[Rejection]) -> None:
        sent.extend(rejections)

    monkeypatch.setattr(agents.persistence.dead_letters, "publish", publish)
    return sent


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_valid_orders_are_saved(sink: InMemoryOrderSink, dead_letters: list):
    generator = OrderGenerator(seed=1)
    orders = [generator.order() for _ in range(5)]
    async with persist_orders.test_context() as agent:
        for order in orders:
            await agent.put(order.dumps(), key=order.order_id.encode())
        await eventually(lambda: len(sink.orders) == 5)
    assert sink.orders.keys() == {o.order_id for o in orders}
    assert sink.orders[orders[0].order_id].total == orders[0].total
    assert dead_letters == []


async def test_bad_messages_are_rejected_and_good_ones_after_them_still_saved(
    sink: InMemoryOrderSink, dead_letters: list
):
    good = OrderGenerator(seed=2).order()
    bad = [b"not json", b'{"order_id": "x"}', json.dumps({**json.loads(good.dumps()), "total": "0.01"})]
    async with persist_orders.test_context() as agent:
        for raw in bad:
            await agent.put(raw.encode() if isinstance(raw, str) else raw)
        await agent.put(good.dumps())
        await eventually(lambda: good.order_id in sink.orders)
    raw = [b if isinstance(b, bytes) else b.encode() for b in bad]
    assert [r.source.value for r in sink.rejections] == raw
    assert [r.reason for r in dead_letters] == [r.reason for r in sink.rejections]
    assert "not valid JSON" in sink.rejections[0].reason
    assert "missing field" in sink.rejections[1].reason
    assert "does not equal the sum" in sink.rejections[2].reason
    assert [r.source.offset for r in sink.rejections] == [0, 1, 2]


async def test_the_same_order_twice_is_saved_once(sink: InMemoryOrderSink, dead_letters: list):
    order = OrderGenerator(seed=3).order()
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await agent.put(order.dumps())
        await eventually(lambda: sink.saves >= 1)
        await asyncio.sleep(0.2)
    assert list(sink.orders) == [order.order_id]


async def test_a_batch_handed_on_as_one_event_is_stored_message_by_message_and_acknowledged_whole(
    sink: InMemoryOrderSink, dead_letters: list, monkeypatch: pytest.MonkeyPatch
):
    app = persist_orders.app
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)  # as for a subscribed topic
    orders = [OrderGenerator(seed=5).order() for _ in range(3)]
    values = [orders[0].dumps(), b"not json", orders[1].dumps(), orders[0].dumps(), orders[2].dumps()]
    async with persist_orders.test_context() as agent:
        messages = [agent.to_message(None, value, partition=1, offset=100 + n)
                    for n, value in enumerate(values)]
        batch = MessageBatch(messages, sum(map(message_bytes, messages)))
        channel = agent.stream().channel
        await channel.put(await channel.decode(batch))
        await eventually(lambda: batch.acked)
    assert list(sink.orders) == [o.order_id for o in orders]
    assert [(r.source.partition, r.source.offset) for r in sink.rejections] == [(1, 101)]
    assert [r.source.offset for r in dead_letters] == [101]
    assert all(m.acked for m in messages)
    assert sorted(app.consumer._acked[batch.tp]) == list(range(100, 105))


def test_a_take_is_stored_in_runs_of_whole_events_of_about_the_batch_size():
    def event(size: int) -> SimpleNamespace:
        messages = [Message("t", 0, n, 0.0, 0, None, None, b"", None) for n in range(size)]
        return SimpleNamespace(message=MessageBatch(messages, 0) if size > 1 else messages[0])

    events = [event(3), event(1), event(4), event(1), event(2)]
    runs = []
    while events:
        size = leading_run(events, 4)
        runs.append(events[:size])
        del events[:size]
    assert [[len(messages_of(e)) for e in run] for run in runs] == [[3, 1], [4], [1, 2]]


async def test_validation_lets_the_store_beside_it_run_and_still_keeps_a_repeated_order_once():
    generator = OrderGenerator(seed=11)
    orders = [generator.order() for _ in range(2 * VALIDATE_BETWEEN_YIELDS)]
    values = [order.dumps() for order in orders] + [orders[0].dumps()]  # the first again, past a yield
    messages = [Message("t", 0, n, 0.0, 0, None, None, value, None) for n, value in enumerate(values)]
    turns = 0

    async def beside() -> None:  # as the store's task: it runs whenever validation lets it
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    store = asyncio.create_task(beside())
    batch = await validated(messages)
    store.cancel()
    assert turns >= 2, "the task beside validation ran only once it was over"
    assert [a.order.order_id for a in batch.orders] == [order.order_id for order in orders]
    assert batch.rejections == [] and batch.order_events == []


def test_a_rebalance_drops_what_was_taken_and_not_yet_stored_and_stops_waiting_for_it():
    app = persist_orders.app
    consumer = app.consumer
    kept, dropped = (Message("t", 0, n, 0.0, 0, None, None, b"x" * 10, None) for n in (1, 2))
    consumer._unacked_messages.update((kept, dropped))
    for message in (kept, dropped):
        consumer._count_in(message, message_bytes(message))
    bytes_before = consumer.bytes_in_flight
    taken = Taken(SimpleNamespace(app=app), [SimpleNamespace(message=dropped)])
    app.flow_control.clear()  # as Faust does when partitions are revoked
    assert len(taken) == 0
    assert dropped not in consumer._unacked_messages
    assert dropped not in consumer.in_flight
    assert consumer.bytes_in_flight == bytes_before - 10
    assert kept in consumer._unacked_messages  # what is being stored is still waited for
    consumer.drop(kept)


async def test_a_database_outage_is_waited_out_without_losing_the_batch(
    sink: InMemoryOrderSink, dead_letters: list
):
    sink.outages = 3
    order = OrderGenerator(seed=4).order()
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await eventually(lambda: order.order_id in sink.orders)
    assert sink.outages == 0
    assert sink.saves == 1


async def test_the_generator_timer_feeds_orders_the_consumer_accepts(
    sink: InMemoryOrderSink, dead_letters: list, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(agents.generator, "generator", OrderGenerator(seed=9))
    async with persist_orders.test_context() as agent:
        published: list[Order] = []

        async def send(key: str, value: bytes) -> asyncio.Future:
            published.append(msgspec.json.decode(value, type=Order))
            await agent.put(value, key=key.encode())
            return acknowledged()

        monkeypatch.setattr(orders_topic, "send", send)
        await place_orders()
        await place_orders()
        await eventually(lambda: len(sink.orders) == len(published))
    assert published, "the timer published nothing"
    assert sink.rejections == []
    assert set(sink.orders) == {o.order_id for o in published}


class RefusingSink(InMemoryOrderSink):
    """Refuses any batch holding one poisoned order, as PostgreSQL refuses a value it cannot hold."""

    def __init__(self, poisoned: str) -> None:
        super().__init__()
        self.poisoned = poisoned

    async def save(self, orders, rejections=()):
        if any(a.order.order_id == self.poisoned for a in orders):
            raise RowsRefused("PostgreSQL refused the order [22003]: numeric field overflow")
        return await super().save(orders, rejections)


class FlakySink(InMemoryOrderSink):
    """Fails its first saves with an error nobody foresaw."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def save(self, orders, rejections=()):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug nobody foresaw")
        return await super().save(orders, rejections)


def altered(order: Order, **changes) -> bytes:
    return json.dumps({**json.loads(order.dumps()), **changes}).encode()


async def test_a_different_order_under_a_known_id_is_rejected_not_merged(
    sink: InMemoryOrderSink, dead_letters: list
):
    order = OrderGenerator(seed=5).order()
    twin = altered(order, customer_name="Someone Else")
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await agent.put(twin)  # same batch: refused by the agent
        await eventually(lambda: len(sink.rejections) == 1)
        await agent.put(twin)  # a later batch: refused by the sink
        await eventually(lambda: len(sink.rejections) == 2)
    assert sink.orders[order.order_id].customer_name == order.customer_name
    conflict = f"conflicting duplicate of order {order.order_id}"
    assert all(r.reason.startswith(conflict) for r in sink.rejections)
    assert [r.kind for r in dead_letters] == ["ConflictingDuplicate"] * 2


async def test_a_row_the_database_refuses_is_isolated_and_the_rest_stored(
    monkeypatch: pytest.MonkeyPatch, dead_letters: list
):
    generator = OrderGenerator(seed=6)
    orders = [generator.order() for _ in range(7)]
    refusing = RefusingSink(poisoned=orders[3].order_id)
    monkeypatch.setattr(agents.persistence, "sink", refusing)
    async with persist_orders.test_context() as agent:
        for order in orders:
            await agent.put(order.dumps())
        await eventually(lambda: len(refusing.orders) + len(refusing.rejections) == 7)
    assert set(refusing.orders) == {o.order_id for o in orders} - {orders[3].order_id}
    [rejection] = refusing.rejections
    assert rejection.kind == "RefusedByDatabase" and "numeric field overflow" in rejection.reason
    assert dead_letters == [rejection]


async def test_an_unforeseen_error_holds_the_batch_and_health_says_so(
    monkeypatch: pytest.MonkeyPatch, dead_letters: list
):
    flaky = FlakySink(failures=2)
    monkeypatch.setattr(agents.persistence, "sink", flaky)
    monkeypatch.setattr(agents.persistence, "FIRST_RETRY_SECONDS", 0.2)
    order = OrderGenerator(seed=7).order()
    async with persist_orders.test_context() as agent:
        await agent.put(order.dumps())
        await eventually(lambda: agents.persistence.ingest_state.error is not None)
        assert "RuntimeError while storing the batch" in agents.persistence.ingest_state.error
        await eventually(lambda: order.order_id in flaky.orders)
        await eventually(lambda: agents.persistence.ingest_state.error is None)
    assert flaky.saves == 1


async def test_a_dead_letter_topic_that_fails_is_retried_until_it_takes_the_rejection(
    sink: InMemoryOrderSink, monkeypatch: pytest.MonkeyPatch
):
    attempts: list[int] = []

    async def send(**kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("broker down")
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    monkeypatch.setattr(agents.persistence.dead_letters.topic, "send", send)
    monkeypatch.setattr(dead_letters_module, "FIRST_RETRY_SECONDS", 0.01)
    async with persist_orders.test_context() as agent:
        await agent.put(b"{broken")
        await eventually(lambda: len(sink.dead_lettered) == 1)
    assert len(attempts) == 3
    assert [r.source.value for r in sink.rejections] == [b"{broken"]


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

    async def send(self, key: str, value: bytes) -> asyncio.Future:
        self.sent.append(msgspec.json.decode(value, type=Order))
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
    assert topic.sent[0] == topic.sent[1] == topic.sent[2], "a retry sends the same order again"
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


async def test_a_batch_goes_once_nothing_more_is_waiting_not_when_its_timer_ends(
    sink: InMemoryOrderSink, dead_letters: list, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(agents.persistence, "settings",
                        replace(agents.persistence.settings, batch_within_seconds=3600.0))
    generator = OrderGenerator(seed=3)
    async with persist_orders.test_context() as agent:
        for stored in (1, 2, 3):  # one at a time: each its own batch, none full, the timer an hour
            order = generator.order()
            await agent.put(order.dumps(), key=order.store_id.encode())
            await eventually(lambda n=stored: len(sink.orders) == n)
    assert dead_letters == []


class GatedSink(InMemoryOrderSink):
    """Each save waits for ``gate``; while ``down`` it fails as PostgreSQL away does. ``tries``
    lists the order ids of every save begun."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.down = False
        self.tries: list[list[str]] = []

    async def save(self, orders, rejections=()):
        self.tries.append([a.order.order_id for a in orders])
        if self.down:
            raise database_module.DatabaseUnavailable("connection refused")
        await self.gate.wait()
        return await super().save(orders, rejections)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch, dead_letters: list) -> GatedSink:
    gated = GatedSink()
    monkeypatch.setattr(agents.persistence, "sink", gated)
    monkeypatch.setattr(database_module, "FIRST_RETRY_SECONDS", 0.01)
    monkeypatch.setattr(persist_orders.app.topics, "acks_enabled_for", lambda topic: True)
    return gated


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The offsets of each batch the agent validates, in order."""
    seen: list[list[int]] = []
    validated = agents.persistence.validated

    async def recorded(messages):
        seen.append([m.offset for m in messages])
        return await validated(messages)

    monkeypatch.setattr(agents.persistence, "validated", recorded)
    return seen


async def hand_on(agent, orders: list[Order], partition: int, first_offset: int) -> MessageBatch:
    """``orders`` as one batch of ``partition`` (one no other test uses: the app's consumer keeps
    its acknowledgements) at ``first_offset`` on, as the consumer hands it on."""
    messages = [agent.to_message(None, order.dumps(), partition=partition, offset=first_offset + n)
                for n, order in enumerate(orders)]
    batch = MessageBatch(messages, sum(map(message_bytes, messages)))
    channel = agent.stream().channel
    await channel.put(await channel.decode(batch))
    return batch


async def test_the_next_batch_is_validated_while_one_is_stored_and_each_is_stored_and_acknowledged_in_turn(
    gated: GatedSink, validations: list
):
    generator = OrderGenerator(seed=10)
    first, second = [generator.order() for _ in range(3)], [generator.order() for _ in range(2)]
    async with persist_orders.test_context() as agent:
        acked = persist_orders.app.consumer._acked
        one = await hand_on(agent, first, 2, 0)
        await eventually(lambda: len(gated.tries) == 1)
        two = await hand_on(agent, second, 2, 3)
        await eventually(lambda: len(validations) == 2)  # validated while the first is stored
        assert len(gated.tries) == 1, "the second batch's transaction began before the first's ended"
        assert not one.acked and not two.acked and not acked[one.tp]
        gated.gate.set()
        await eventually(lambda: two.acked)
    assert validations == [[0, 1, 2], [3, 4]]
    assert gated.tries == [[o.order_id for o in first], [o.order_id for o in second]]
    assert list(acked[one.tp]) == [0, 1, 2, 3, 4]
    assert list(gated.orders) == [o.order_id for o in first + second]


async def test_an_outage_with_the_next_batch_validated_acknowledges_neither_until_both_are_stored(
    gated: GatedSink, validations: list
):
    generator = OrderGenerator(seed=11)
    first, second = [generator.order() for _ in range(2)], [generator.order() for _ in range(2)]
    gated.down = True
    async with persist_orders.test_context() as agent:
        acked = persist_orders.app.consumer._acked
        one = await hand_on(agent, first, 3, 0)
        await eventually(lambda: len(gated.tries) == 1)
        two = await hand_on(agent, second, 3, 2)
        await eventually(lambda: len(validations) == 2)
        tries = len(gated.tries)
        await eventually(lambda: len(gated.tries) > tries)  # the first batch, tried again
        assert {tuple(ids) for ids in gated.tries} == {tuple(o.order_id for o in first)}
        assert not one.acked and not two.acked and not acked[one.tp]
        gated.down = False
        gated.gate.set()
        await eventually(lambda: two.acked)
    assert list(acked[one.tp]) == [0, 1, 2, 3]
    assert list(gated.orders) == [o.order_id for o in first + second]


async def test_a_batch_being_stored_when_the_agent_stops_is_not_acknowledged(gated: GatedSink):
    orders = [OrderGenerator(seed=12).order()]
    async with persist_orders.test_context() as agent:
        acked = persist_orders.app.consumer._acked
        batch = await hand_on(agent, orders, 4, 0)
        await eventually(lambda: len(gated.tries) == 1)
    assert not batch.acked and not acked[batch.tp]
    assert gated.orders == {}
