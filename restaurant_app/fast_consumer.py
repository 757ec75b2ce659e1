"""Faust's Kafka consumer without its costliest per-message step.

Faust's ``Consumer._drain_messages`` hands each fetched message to the streams with
``wait_first(callback(message), suspend_flow.wait())``: four asyncio tasks and an
``asyncio.wait`` per message, about a seventh of the worker's CPU per order. Here the callback
is awaited directly while the flow runs; while it is suspended (a rebalance) the message goes
through ``wait_first`` as before. Offsets, gaps and commits are handled as in Faust.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, Message
from mode import ServiceT

YIELD_EVERY = 100
"""Messages handed on between yields to the event loop, as in Faust."""


class FastConsumer(aiokafka.Consumer):
    """Faust's aiokafka consumer, awaiting the stream callback directly while the flow runs."""

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
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # already read: Faust drops it too
            await self._before(tp, message, last)
            if suspended():
                await self.wait_first(callback(message), self.suspend_flow.wait())
            else:
                await callback(message)
            read_offset[tp] = offset

    async def _before(self, tp: TP, message: Message, last: int | None) -> None:
        """Record a gap in the offsets and commit every ``broker_commit_every`` acks, as Faust does."""
        if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, last + 1, message.offset)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
