"""Faust's Kafka consumer without its costliest per-message step.

Faust's ``Consumer._drain_messages`` hands each fetched message to the streams with
``wait_first(callback(message), suspend_flow.wait())``: four asyncio tasks and an
``asyncio.wait`` per message, about a seventh of the worker's CPU per order. Here the callback
is awaited directly while the flow runs; while it is suspended (a rebalance) the message goes
through ``wait_first`` as before. Offsets, gaps and commits are handled as in Faust.

Faust bounds what it holds in messages (the stream's buffer, the take's batch), which is
gigabytes when each message is near Kafka's 1 MB. Here the bytes of the messages handed on and
not yet acknowledged are bounded too: once they reach ``max_bytes_in_flight``, the fetch loop
waits for acknowledgements before it hands on the next message (one message alone always goes).
"""

from __future__ import annotations

import asyncio
from typing import Any
from weakref import WeakSet

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, Message
from mode import ServiceT

YIELD_EVERY = 100
"""Messages handed on between yields to the event loop, as in Faust."""
ROOM_CHECK_SECONDS = 0.02
"""How often a fetch loop that waits for room looks again."""


def message_bytes(message: Message) -> int:
    """What a message holds in memory, about: its key, value and headers."""
    headers = sum(len(name) + len(value or b"") for name, value in message.headers or ())
    return len(message.key or b"") + len(message.value or b"") + headers


class FastConsumer(aiokafka.Consumer):
    """Faust's aiokafka consumer, awaiting the stream callback directly while the flow runs,
    with the bytes of the messages not yet acknowledged bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bytes_in_flight = 0
        self.in_flight: WeakSet[Message] = WeakSet()
        """Messages handed on and not acknowledged; one dropped in a rebalance leaves by itself."""
        self.handed_on_all = True
        """No message fetched is still to be handed on (``restaurant_app.batches`` flushes then)."""

    @property
    def max_bytes_in_flight(self) -> int:
        return self.transport.max_bytes_in_flight  # type: ignore[attr-defined]

    def ack(self, message: Message) -> bool:
        """Faust's acknowledgement; the message's bytes are no longer in flight."""
        if message in self.in_flight:
            self.in_flight.discard(message)
            self.bytes_in_flight -= message_bytes(message)
        return super().ack(message)

    async def _room_for(self, message: Message) -> None:
        """Wait until ``message`` fits in flight, or nothing else is; then count it in."""
        size = message_bytes(message)
        while self.bytes_in_flight and self.bytes_in_flight + size > self.max_bytes_in_flight:
            # Count again: a message dropped in a rebalance is never acknowledged.
            self.bytes_in_flight = sum(map(message_bytes, list(self.in_flight)))
            if self.should_stop or not self.bytes_in_flight or (
                    self.bytes_in_flight + size <= self.max_bytes_in_flight):
                break
            await asyncio.sleep(ROOM_CHECK_SECONDS)
        self.in_flight.add(message)
        self.bytes_in_flight += size

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
        """Give each new message of a fetch to the streams, in order."""
        callback, suspended = self.callback, self.suspend_flow.is_set
        read_offset = self._read_offset
        since_yield = 0
        async for tp, message in messages:
            self.handed_on_all = False
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # already read: Faust drops it too
            await self._before(tp, message, last)
            await self._room_for(message)
            if suspended():
                await self.wait_first(callback(message), self.suspend_flow.wait())
            else:
                await callback(message)
            read_offset[tp] = offset
        self.handed_on_all = True

    async def _before(self, tp: TP, message: Message, last: int | None) -> None:
        """Record a gap in the offsets and commit every ``broker_commit_every`` acks, as Faust does."""
        if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, last + 1, message.offset)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
