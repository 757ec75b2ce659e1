"""Publishing rejections to the dead-letter topic, with the headers Kafka Connect's dead-letter queue uses.

Delivery guarantee: at-least-once. The row in ``rejected_orders`` is the record of truth;
a rejection is published after that row commits and marked once Kafka has it, so a crash in
between publishes it again, and a topic that is down or slow pauses the stream until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import TopicT

from restaurant_app.order_sink import Rejection
from restaurant_app.retry import Backoff

log = logging.getLogger(__name__)

ERROR_HEADER = "__connect.errors."
TRUNCATED_HEADER = "truncated-from-bytes"
KEY_TRUNCATED_HEADER = "key-truncated-from-bytes"
DROPPED_HEADERS_HEADER = "dropped-headers"
SLOW_TOPIC_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0
SHARE_OF_LIMIT = 16
"""When a dead letter must be cut, its key and its own headers keep at most 1/16 of the limit each."""
NOTES_ROOM = 256
"""Room kept for the headers that say what was cut."""

Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class DeadLetter:
    """What goes on the dead-letter topic for one rejection."""

    key: bytes | None
    value: bytes
    headers: Headers

    def size(self) -> int:
        """Its size as the producer counts it against ``max_request_size``."""
        return DefaultRecordBatchBuilder.estimate_size_in_bytes(self.key, self.value, self.headers)


def error_headers(rejection: Rejection) -> Headers:
    """Where the message came from and why it was refused, as Kafka Connect says it."""
    source = rejection.source
    return [
        (ERROR_HEADER + "topic", source.topic.encode()),
        (ERROR_HEADER + "partition", str(source.partition).encode()),
        (ERROR_HEADER + "offset", str(source.offset).encode()),
        (ERROR_HEADER + "exception.class.name", rejection.kind.encode()),
        (ERROR_HEADER + "exception.message", rejection.reason.encode()),
        (ERROR_HEADER + "timestamp", str(int(time.time() * 1000)).encode()),
    ]


def dead_letter(rejection: Rejection, limit: int) -> DeadLetter:
    """The message's key, value and own headers, then the error headers, in at most ``limit`` bytes.

    If the whole does not fit, the error headers stay; the message's own headers are kept in
    order while they fit in their share, its key is cut to its share, and the value to what is
    left, each with a header giving what was dropped or the full size. ``rejected_orders`` keeps
    the message whole.
    """
    source, errors = rejection.source, error_headers(rejection)
    whole = DeadLetter(source.key, source.value, [*source.headers, *errors])
    if whole.size() <= limit:
        return whole
    share = limit // SHARE_OF_LIMIT
    own = kept_headers(list(source.headers), share)
    notes: Headers = []
    if len(own) < len(source.headers):
        notes.append((DROPPED_HEADERS_HEADER, str(len(source.headers) - len(own)).encode()))
    key = source.key
    if key is not None and len(key) > share:
        key = key[:share]
        notes.append((KEY_TRUNCATED_HEADER, str(len(source.key)).encode()))
    room = limit - NOTES_ROOM - DeadLetter(key, b"", [*own, *errors, *notes]).size()
    value = source.value[:max(room, 0)]
    if len(value) < len(source.value):
        notes.append((TRUNCATED_HEADER, str(len(source.value)).encode()))
    return DeadLetter(key, value, [*own, *errors, *notes])


def kept_headers(headers: Headers, share: int) -> Headers:
    """The first headers whose encoded size (two 5-byte lengths each at most) stays within ``share``."""
    kept: Headers = []
    used = 0
    for name, value in headers:
        used += len(name.encode()) + len(value or b"") + 10
        if used > share:
            break
        kept.append((name, value))
    return kept


class DeadLetterPublisher:
    """Publishes a batch's rejections in one go and waits until Kafka has every one of them.

    Each rejection is sent once and then waited for, however slow the topic is; only a send
    that failed is sent again, after a pause, so a slow topic makes no duplicates.
    """

    def __init__(self, topic: TopicT, max_request_size: int,
                 held: Callable[[str, float], None] = lambda error, since: None) -> None:
        self.topic = topic
        self.limit = max_request_size
        self.held = held
        """Told, while the topic refuses or keeps waiting, what holds the batch and since when."""

    async def publish(self, rejections: Sequence[Rejection]) -> None:
        pending, since = list(rejections), time.time()
        backoff = Backoff(FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS)
        while pending:
            failures = await self._send_all(pending, since)
            pending = [rejection for rejection, error in zip(pending, failures, strict=True) if error]
            if pending:
                error = next(e for e in failures if e)
                log.warning(
                    "Could not publish %d rejection(s) to the dead-letter topic %r (%s); the stream"
                    " waits and tries again in %.1f s. They are kept in rejected_orders.",
                    len(pending), self.topic.get_topic_name(), error, backoff.delay,
                )
                self.held(f"the dead-letter topic {self.topic.get_topic_name()!r} refuses"
                          f" {len(pending)} rejection(s): {error}", since)
                await backoff.wait()


    async def _send_all(self, rejections: Sequence[Rejection], since: float) -> list[str | None]:
        """Send every rejection and wait for each delivery; return each one's error, if any."""
        deliveries = [asyncio.ensure_future(self._deliver(rejection)) for rejection in rejections]
        waiting = set(deliveries)
        while waiting:
            _, waiting = await asyncio.wait(waiting, timeout=SLOW_TOPIC_SECONDS)
            if waiting:
                log.warning("Still waiting for the dead-letter topic %r to take %d rejection(s).",
                            self.topic.get_topic_name(), len(waiting))
                self.held(f"the dead-letter topic {self.topic.get_topic_name()!r} has not taken"
                          f" {len(waiting)} rejection(s) yet", since)
        return [describe_error(d.exception()) if d.exception() else None for d in deliveries]

    async def _deliver(self, rejection: Rejection) -> None:
        letter = dead_letter(rejection, self.limit)
        delivery = await self.topic.send(key=letter.key, value=letter.value, headers=letter.headers)
        await delivery


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
