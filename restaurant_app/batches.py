"""The persistence agent's batches: Faust's ``noack_take``, flushed as soon as nothing more is waiting.

Faust's ``take`` hands on a batch when it is full or when ``within`` has passed: at a steady
1,000 orders/s each order waited half of ``within`` on average, and all of it at worst, before
its batch was even started. Here a batch also goes as soon as the consumer has handed on all
it fetched and the stream has taken all it was given: a quiet stream's orders are stored at
once, while under load the messages that arrive during one batch's transaction make the next
one (up to ``max_``). ``within`` stays the longest a message waits for its batch to start.
Events are not acknowledged here: the caller acknowledges each batch once it is stored.

In a rebalance Faust clears the streams' queues, so that the revocation waits only for the events
being processed, and then seeks every partition it keeps back to its committed offset. The
batches here are cleared with them (``Taken``): what was taken and not yet stored is delivered
again, to whichever worker then holds its partition, instead of holding the whole group's
rebalance until this worker has stored all it had fetched (up to ``INGEST_MAX_BYTES``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from faust import StreamT
from faust.types import AppT, EventT
from mode.utils.aiter import aiter
from mode.utils.futures import notify


class Taken(list[EventT]):
    """Events taken from a stream and not yet being stored.

    Faust's flow control clears it in a rebalance, as it clears the streams' queues: its events
    are dropped unacknowledged, and Faust's revocation no longer waits for them. It is equal only
    to itself, as the flow control's ``WeakSet`` needs.
    """

    __eq__ = object.__eq__  # type: ignore[assignment]
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __init__(self, stream: StreamT, events: Iterable[EventT] = ()) -> None:
        super().__init__(events)
        self.app = stream.app
        self.app.flow_control.manage_queue(self)  # type: ignore[arg-type]

    def clear(self) -> None:
        for event in self:
            self.app.consumer.drop(event.message)  # type: ignore[attr-defined]
        super().clear()


def rebalancing(app: AppT, event: EventT) -> bool:
    """Whether a rebalance has begun since ``event`` was fetched (Faust's stream skips such an event)."""
    return not app.flow_control.is_active() or event.message.generation_id != app.consumer_generation_id


def caught_up(stream: StreamT) -> bool:
    """Whether the consumer has handed on all it fetched and the stream has taken all of it."""
    handed_on_all = getattr(stream.app.consumer, "handed_on_all", False)
    return handed_on_all and stream.channel.queue.empty()


async def take_batches(stream: StreamT, max_: int, within: float) -> AsyncIterator[Taken]:
    """Batches of at most ``max_`` events, each handed on once full, once the stream has caught
    up with the consumer, or ``within`` seconds after the wait for it began; a rebalance empties
    the batch being handed on and the one being gathered."""
    buffer = Taken(stream)
    ready = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[Any] | None = None

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:
            try:
                await consuming  # no adding while a batch is being handled
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("The batch found no current event for a value")
        if rebalancing(stream.app, event):  # while it waited for the batch before
            stream.app.consumer.drop(event.message)  # type: ignore[attr-defined]
            return value
        buffer.append(event)
        if len(buffer) >= max_:
            ready.set()
            consumed.clear()
            await stream.wait(consumed)  # type: ignore[arg-type]
        elif caught_up(stream):
            ready.set()
        return value

    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=within)  # type: ignore[arg-type]
            ready.clear()
            if not buffer:
                continue
            consuming = stream.loop.create_future()
            handed_on, buffer = buffer, Taken(stream)
            try:
                yield handed_on
            finally:
                notify(consuming)
                consumed.set()
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(add_to_buffer)  # type: ignore[attr-defined]
