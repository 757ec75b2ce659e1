"""The consumer: validates orders (and their cancellations and refunds) from Kafka and stores them
in PostgreSQL in batches.

Every message ends as a stored order or a recorded rejection, and a batch's offsets are
acknowledged only once all of it has. Nothing else moves the offsets: an outage, a refused row,
a dead-letter topic that is down, or an error nobody foresaw holds the batch (and the offsets
after it) until it is done, so Faust never commits past a message that was not handled.

The agent works on two batches at once: while PostgreSQL stores one, the next is taken from
the stream and validated (a few messages at a time, so that the store's statements go out as
soon as the ones before are answered). Batches are still stored and acknowledged one after the
other, in the order they came: the next one's transaction starts only once the one before is
stored and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import NamedTuple, TypeVar

from faust import StreamT
from faust.types import EventT, Message

from restaurant_app import metrics
from restaurant_app.batches import Taken, take_batches
from restaurant_app.database import until_available
from restaurant_app.dead_letters import DeadLetterPublisher
from restaurant_app.fast_consumer import messages_of
from restaurant_app.ingest_state import ingest_state
from restaurant_app.kafka_records import forget, unreadable_reason
from restaurant_app.models import Order
from restaurant_app.order_sink import (
    Accepted,
    AcceptedEvent,
    OrderSink,
    PostgresOrderSink,
    Rejection,
    RejectionKind,
    RowsRefused,
    Saved,
    Source,
)
from restaurant_app.retry import Backoff
from restaurant_app.validation import MAX_REASON_LENGTH, InvalidOrder, parse_message
from restaurant_app.worker import app, dead_letter_topic, ingest_database, orders_topic, settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CLOCK_SKEW = timedelta(seconds=settings.max_clock_skew_seconds)
MAX_ORDER_AGE = timedelta(days=settings.max_order_age_days)
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 30.0
VALIDATE_BETWEEN_YIELDS = 50
"""Messages validated between yields to the event loop (about 2 ms of validation here)."""

sink: OrderSink = PostgresOrderSink(ingest_database, settings.rejected_raw_max_bytes)
dead_letters = DeadLetterPublisher(dead_letter_topic, app.conf.producer_max_request_size, ingest_state.held)


def source_of(message: Message) -> Source:
    headers = tuple((str(k), bytes(v or b"")) for k, v in message.headers) if message.headers else ()
    return Source(message.topic, message.partition, message.offset, message.value or b"",
                  message.key, headers)


class SortedBatch(NamedTuple):
    """A batch's messages, split by ``validated``."""

    orders: list[Accepted]
    order_events: list[AcceptedEvent]
    rejections: list[Rejection]


async def validated(messages: Sequence[Message]) -> SortedBatch:
    """Split a batch of raw messages into valid orders, valid cancellations and refunds, and
    rejections with their reasons.

    An order or event repeated in the batch is kept once. Different versions under one id are all
    kept: the sink stores one and refuses the others as conflicting duplicates. The event loop runs
    every ``VALIDATE_BETWEEN_YIELDS`` messages, so that the store beside it sends each statement as
    soon as PostgreSQL has answered the one before, not once the whole batch is validated.
    """
    batch = SortedBatch([], [], [])
    seen: set[tuple[str, bytes]] = set()
    for n, kafka_message in enumerate(messages, start=1):
        if n % VALIDATE_BETWEEN_YIELDS == 0:
            await asyncio.sleep(0)
        source = source_of(kafka_message)
        unreadable = unreadable_reason(source.position)
        if unreadable is not None:
            reason = f"unreadable Kafka record: {unreadable}"[:MAX_REASON_LENGTH]
            batch.rejections.append(Rejection(source, reason, RejectionKind.UNREADABLE_RECORD))
            continue
        try:
            message = parse_message(source.value, max_clock_skew=MAX_CLOCK_SKEW, max_age=MAX_ORDER_AGE)
        except InvalidOrder as exc:
            batch.rejections.append(Rejection(source, str(exc)))
            continue
        key = message.order_id if isinstance(message, Order) else message.event_id
        if (key, source.value) in seen:
            continue
        seen.add((key, source.value))
        if isinstance(message, Order):
            batch.orders.append(Accepted(message, source))
        else:
            batch.order_events.append(AcceptedEvent(message, source))
    return batch


async def store(orders: list[Accepted], rejections: list[Rejection]) -> Saved:
    """Save a batch; if PostgreSQL refuses a row, split the batch until the refused orders are found.

    A refused order becomes a rejection with the database's reason; the others are stored.
    """
    try:
        return await until_available(
            lambda: sink.save(orders, rejections),
            f"storing {len(orders)} order(s), whose offsets stay uncommitted until then",
            ingest_state.held,
        )
    except RowsRefused as exc:
        if len(orders) <= 1:
            refused = [Rejection(a.source, str(exc), RejectionKind.REFUSED_BY_DATABASE) for a in orders]
            if not orders:
                raise  # a rejection itself was refused: nothing left to split
            return await store([], [*rejections, *refused])
    half = len(orders) // 2
    return await store(orders[:half], rejections) + await store(orders[half:], [])


async def store_events(events: list[AcceptedEvent]) -> Saved:
    """Save cancellations and refunds, after the batch's orders; isolate any PostgreSQL refuses."""
    if not events:
        return Saved(0)
    try:
        return await until_available(
            lambda: sink.save_events(events),
            f"storing {len(events)} cancellation(s) or refund(s), whose offsets stay uncommitted until then",
            ingest_state.held,
        )
    except RowsRefused as exc:
        if len(events) == 1:
            return await store([], [Rejection(events[0].source, str(exc), RejectionKind.REFUSED_BY_DATABASE)])
    half = len(events) // 2
    return await store_events(events[:half]) + await store_events(events[half:])


async def handle(messages: Sequence[Message], batch: SortedBatch) -> None:
    """Store a validated batch, publish its new rejections, log what happened and count it in the metrics."""
    started = time.monotonic()
    orders, order_events, rejections = batch
    saved_orders = await store(orders, rejections)
    saved_events = await store_events(order_events)  # after the orders: an event needs its order
    saved = saved_orders + saved_events
    # A rejection already on the dead-letter topic was counted when first recorded.
    metrics.batch_committed((m.timestamp for m in messages), saved.new_orders,
                            (r.kind for r in saved.not_dead_lettered), time.time(), saved.new_events)
    for rejection in saved.rejections:
        source = rejection.source
        log.warning("Rejected the message at %s[%d]@%d: %s",
                    source.topic, source.partition, source.offset, rejection.reason)
    if saved.not_dead_lettered:
        await dead_letters.publish(saved.not_dead_lettered)
        await until_available(lambda: sink.mark_dead_lettered(saved.not_dead_lettered),
                              "recording which rejections reached the dead-letter topic", ingest_state.held)
    refused_orders = len(saved_orders.rejections) - len(rejections)
    log.info("Stored %d new order(s) in PostgreSQL (%d already there, %d rejected)",
             saved.new_orders, len(orders) - saved.new_orders - refused_orders, len(saved_orders.rejections))
    if order_events:
        log.info("Stored %d new cancellation(s) or refund(s) (%d already there, %d rejected)",
                 saved.new_events, len(order_events) - saved.new_events - len(saved_events.rejections),
                 len(saved_events.rejections))
    metrics.batch_handled(len(messages), time.monotonic() - started)


async def until_done(step: Callable[[], Awaitable[T]], messages: Sequence[Message]) -> T:
    """Run a step of the batch, trying again after an error nobody foresaw; ``/health`` shows the hold-up."""
    backoff = Backoff(FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS)
    while True:
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            first = messages[0]
            error = (f"{type(exc).__name__} while storing the batch from"
                     f" {first.topic}[{first.partition}]@{first.offset}")
            ingest_state.stalled(error)
            log.exception("%s; its offsets stay uncommitted and it is tried again in %.1f s.", error,
                          backoff.delay)
            await backoff.wait()


async def store_and_acknowledge(stream: StreamT, events: Sequence[EventT], messages: Sequence[Message],
                                batch: SortedBatch) -> None:
    """Store a validated batch, then acknowledge its events: its offsets become committable."""
    await until_done(lambda: handle(messages, batch), messages)
    ingest_state.flowing()
    for event in events:
        await stream.ack(event)
    forget([(m.topic, m.partition, m.offset) for m in messages])


@app.agent(orders_topic, name="persist-orders")
async def persist_orders(stream: StreamT) -> None:
    """Store every valid order exactly once; route everything else to the dead-letter topic.

    A batch's offsets are acknowledged only after its transaction commits (and its rejections
    are on the dead-letter topic), so a crash or an outage makes Kafka deliver it again, and
    the idempotent insert turns that redelivery into no new rows.
    """
    await sink.ready()
    batches = take_batches(stream, settings.batch_max_orders, within=settings.batch_within_seconds)
    storing: asyncio.Task[None] | None = None
    try:
        async for events in batches:
            storing = await store_in_chunks(stream, events, storing)
        if storing is not None:
            await storing
    finally:
        if storing is not None and not storing.done():
            storing.cancel()  # not acknowledged: Kafka delivers it again


async def store_in_chunks(stream: StreamT, events: Taken, storing: asyncio.Task[None] | None
                          ) -> asyncio.Task[None] | None:
    """Validate the events a chunk at a time, each while the chunk before is stored; return the last
    chunk's store, still running.

    A chunk leaves ``events`` as its store starts. A rebalance empties ``events``: the chunks not
    yet being stored are left, unacknowledged, for Kafka to deliver again, so that the revocation
    waits for one store only.
    """
    while events:
        size = leading_run(events, settings.batch_max_orders)
        chunk = events[:size]
        messages = [message for event in chunk for message in messages_of(event)]
        batch = await until_done(lambda m=messages: validated(m), messages)
        if storing is not None:
            await storing  # the batch before: stored and acknowledged first
        if not events:
            break
        del events[:size]
        storing = asyncio.create_task(store_and_acknowledge(stream, chunk, messages, batch))
    return storing


def leading_run(events: Sequence[EventT], most: int) -> int:
    """How many of the first events make a run of about ``most`` messages, whole: the consumer
    hands on up to ``most`` messages as one event (``MessageBatch``), and a take gathers up to
    ``most`` events."""
    count = 0
    for end, event in enumerate(events, start=1):
        count += len(messages_of(event))
        if count >= most:
            return end
    return len(events)
