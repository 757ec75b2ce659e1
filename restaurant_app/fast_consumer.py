"""Faust's Kafka consumer without its costliest per-message steps.

Faust's ``Consumer._drain_messages`` hands each fetched message to the streams with
``wait_first(callback(message), suspend_flow.wait())``: four asyncio tasks and an
``asyncio.wait`` per message, about a seventh of the worker's CPU per order. Here the callback
is awaited directly while the flow runs; while it is suspended (a rebalance) the message goes
through ``wait_first`` as before. Offsets, gaps and commits are handled as in Faust.

A topic named in ``batched_topics`` goes further: the messages a fetch brings from one of its
partitions reach the streams as one ``MessageBatch``, so Faust's conductor, event, stream
iteration, sensors and acknowledgement run once per batch instead of once per message (about
half of the worker's CPU per order). Its agent reads the messages with ``messages_of`` and
acknowledges the batch as a whole; Faust commits its offsets as it does each message's.

Faust bounds what it holds in messages (the stream's buffer, the take's batch), which is
gigabytes when each message is near Kafka's 1 MB. Here the bytes of the messages handed on and
not yet acknowledged are bounded too: once they reach ``max_bytes_in_flight``, the fetch loop
hands on what it gathered and waits for acknowledgements before it takes the next message (one
message alone always goes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from weakref import WeakSet

from faust.transport.consumer import CONSUMER_FETCHING, ConsumerMessage
from faust.transport.drivers import aiokafka
from faust.types import TP, EventT, Message
from faust.types.tuples import ack_lock
from mode import ServiceT
from mode.utils.futures import notify

YIELD_EVERY = 100
"""Messages handed on between yields to the event loop, as in Faust."""
ROOM_CHECK_SECONDS = 0.02
"""How often a fetch loop that waits for room looks again."""
DEFAULT_MAX_BATCH = 5000
"""Most messages in one ``MessageBatch``."""


class MessageBatch(ConsumerMessage):
    """Messages of one partition from one fetch, in order, handed to the streams as one message.

    It stands at its last message's offset; acknowledging it acknowledges each of its messages.
    """

    __slots__ = ("messages", "nbytes")

    def __init__(self, messages: Sequence[Message], nbytes: int) -> None:
        last = messages[-1]
        super().__init__(last.topic, last.partition, last.offset, last.timestamp, last.timestamp_type,
                         None, None, b"", None, 0, nbytes, last.tp, generation_id=last.generation_id)
        self.messages = messages
        self.nbytes = nbytes
        """What its messages hold in memory (``message_bytes``)."""


def messages_of(event: EventT) -> Sequence[Message]:
    """The Kafka messages an event carries: a batch's, or the event's own."""
    message = event.message
    return message.messages if isinstance(message, MessageBatch) else (message,)


def message_bytes(message: Message) -> int:
    """What a message holds in memory, about: its key, value and headers (a batch: its messages')."""
    if isinstance(message, MessageBatch):
        return message.nbytes
    size = len(message.key or b"") + len(message.value or b"")
    if message.headers:
        for name, value in message.headers:
            size += len(name) + len(value or b"")
    return size


class FastConsumer(aiokafka.Consumer):
    """Faust's aiokafka consumer, awaiting the stream callback directly while the flow runs,
    handing on the messages of ``batched_topics`` in batches, with the bytes of the messages not
    yet acknowledged bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bytes_in_flight = 0
        self.in_flight: WeakSet[Message] = WeakSet()
        """Messages (and batches) handed on and not acknowledged; one Faust drops leaves by itself."""
        self.handed_on_all = True
        """No message fetched is still to be handed on (``restaurant_app.batches`` flushes then)."""

    @property
    def max_bytes_in_flight(self) -> int:
        return self.transport.max_bytes_in_flight  # type: ignore[attr-defined]

    @property
    def batched_topics(self) -> frozenset[str]:
        return self.transport.batched_topics  # type: ignore[attr-defined]

    @property
    def max_batch(self) -> int:
        return self.transport.max_batch  # type: ignore[attr-defined]

    def ack(self, message: Message) -> bool:
        """Faust's acknowledgement (of each message of a batch); the bytes are no longer in flight."""
        self._count_out(message)
        if isinstance(message, MessageBatch):
            return self._ack_batch(message)
        return super().ack(message)

    def drop(self, message: Message) -> None:
        """Leave ``message`` (or batch) unacknowledged and forget it, as a rebalance drops it: Faust's
        revocation no longer waits for it, and Kafka delivers it again from the offset last committed."""
        self._count_out(message)
        self._unacked_messages.discard(message)

    def _ack_batch(self, batch: MessageBatch) -> bool:
        """``Consumer.ack`` for each message of ``batch``, at once: its offsets become committable."""
        with ack_lock:
            if batch.acked:
                return False
            batch.acked = True
            self._unacked_messages.discard(batch)
            fresh = [m.offset for m in batch.messages if not m.acked]
            for message in batch.messages:
                message.acked = True
            if not self.app.topics.acks_enabled_for(batch.topic):
                return False
            tp, committed = batch.tp, self._committed_offset[batch.tp]
            acked_index = self._acked_index[tp]
            new = [o for o in fresh if (committed is None or o >= committed) and o not in acked_index]
            acked_index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
            notify(self._waiting_for_ack)
            return bool(new)

    def _has_room(self, size: int) -> bool:
        return not self.bytes_in_flight or self.bytes_in_flight + size <= self.max_bytes_in_flight

    async def _room_for(self, size: int) -> None:
        """Wait until ``size`` more bytes fit in flight, or nothing else is."""
        while not self._has_room(size):
            # Count again: a message dropped in a rebalance is never acknowledged.
            self.bytes_in_flight = sum(map(message_bytes, list(self.in_flight)))
            if self.should_stop or self._has_room(size):
                break
            await asyncio.sleep(ROOM_CHECK_SECONDS)

    def _count_in(self, message: Message, size: int) -> None:
        self.in_flight.add(message)
        self.bytes_in_flight += size

    def _count_out(self, message: Message) -> None:
        if message in self.in_flight:
            self.in_flight.discard(message)
            self.bytes_in_flight -= message_bytes(message)

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
        """Faust's fetch loop (``faust.transport.consumer.Consumer``), without a task per message."""
        should_stop = (self._stopped.is_set, fetcher._stopped.is_set)  # type: ignore[attr-defined]
        try:
            while not any(stopped() for stopped in should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    await self._hand_on(messages)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Consumer shutting down for user cancel.")
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _hand_on(self, messages: Any) -> None:
        """Give each new message of a fetch to the streams, in order (in batches for ``batched_topics``)."""
        read_offset, batched = self._read_offset, self.batched_topics
        gathered: dict[TP, list[Message]] = {}
        sizes: dict[TP, int] = {}
        gathered_bytes = 0
        since_yield = 0
        async for tp, message in messages:
            self.handed_on_all = False
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # already read: Faust drops it too
            await self._before(tp, message, last)
            size = message_bytes(message)
            if message.topic not in batched:
                since_yield += 1
                if since_yield > YIELD_EVERY:
                    await asyncio.sleep(0)
                    since_yield = 0
                await self._room_for(size)
                self._count_in(message, size)
                await self._deliver(message)
            else:
                if not self._has_room(gathered_bytes + size):
                    await self._hand_on_batches(gathered, sizes)
                    gathered, sizes, gathered_bytes = {}, {}, 0
                    await self._room_for(size)
                batch = gathered.setdefault(tp, [])
                batch.append(message)
                sizes[tp] = sizes.get(tp, 0) + size
                gathered_bytes += size
                if len(batch) >= self.max_batch:
                    gathered_bytes -= await self._hand_on_batch(gathered.pop(tp), sizes.pop(tp))
            read_offset[tp] = offset
        await self._hand_on_batches(gathered, sizes)
        self.handed_on_all = True

    async def _hand_on_batches(self, gathered: dict[TP, list[Message]], sizes: dict[TP, int]) -> None:
        for tp, batch in gathered.items():
            await self._hand_on_batch(batch, sizes[tp])

    async def _hand_on_batch(self, messages: list[Message], nbytes: int) -> int:
        """Hand ``messages`` (``nbytes`` of them, by ``message_bytes``) on as one ``MessageBatch``; return
        ``nbytes``."""
        batch = MessageBatch(messages, nbytes)
        self._count_in(batch, nbytes)
        await self._deliver(batch)
        return nbytes

    async def _deliver(self, message: Message) -> None:
        if self.suspend_flow.is_set():
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
        else:
            await self.callback(message)

    async def _before(self, tp: TP, message: Message, last: int | None) -> None:
        """Record a gap in the offsets and commit every ``broker_commit_every`` acks, as Faust does."""
        if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, last + 1, message.offset)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
