"""Publishing rejections to the dead-letter topic, with the headers Kafka Connect's dead-letter queue uses.

Delivery guarantee: at-least-once. The row in ``rejected_orders`` is the record of truth;
a rejection is published after that row commits and marked once Kafka has it, so a crash in
between publishes it again, and a topic that is down or slow pauses the stream until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from faust.types import TopicT

from restaurant_app.order_sink import Rejection
from restaurant_app.retry import Backoff

log = logging.getLogger(__name__)

ERROR_HEADER = "__connect.errors."
TRUNCATED_HEADER = "truncated-from-bytes"
SLOW_TOPIC_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0
HEADROOM_BYTES = 64 * 1024
"""Room left under the producer's request limit for the key, the headers and the batch framing."""


def dead_letter_headers(rejection: Rejection) -> list[tuple[str, bytes]]:
    """The original message's headers, then where it came from and why it was refused."""
    source = rejection.source
    return [
        *source.headers,
        (ERROR_HEADER + "topic", source.topic.encode()),
        (ERROR_HEADER + "partition", str(source.partition).encode()),
        (ERROR_HEADER + "offset", str(source.offset).encode()),
        (ERROR_HEADER + "exception.class.name", rejection.kind.encode()),
        (ERROR_HEADER + "exception.message", rejection.reason.encode()),
        (ERROR_HEADER + "timestamp", str(int(time.time() * 1000)).encode()),
    ]


def fitted(value: bytes, limit: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value cut to ``limit`` bytes, with a header giving its full size when it was cut."""
    if len(value) <= limit:
        return value, []
    return value[:limit], [(TRUNCATED_HEADER, str(len(value)).encode())]


class DeadLetterPublisher:
    """Publishes a batch's rejections in one go and waits until Kafka has every one of them.

    Each rejection is sent once and then waited for, however slow the topic is; only a send
    that failed is sent again, after a pause, so a slow topic makes no duplicates.
    """

    def __init__(self, topic: TopicT, max_request_size: int) -> None:
        self.topic = topic
        self.value_limit = max(max_request_size - HEADROOM_BYTES, 1024)

    async def publish(self, rejections: Sequence[Rejection]) -> None:
        pending, backoff = list(rejections), Backoff(FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS)
        while pending:
            failures = await self._send_all(pending)
            pending = [rejection for rejection, error in zip(pending, failures, strict=True) if error]
            if pending:
                error = next(e for e in failures if e)
                log.warning(
                    "Could not publish %d rejection(s) to the dead-letter topic %r (%s); the stream"
                    " waits and tries again in %.1f s. They are kept in rejected_orders.",
                    len(pending), self.topic.get_topic_name(), error, backoff.delay,
                )
                await backoff.wait()

    async def _send_all(self, rejections: Sequence[Rejection]) -> list[str | None]:
        """Send every rejection and wait for each delivery; return each one's error, if any."""
        deliveries = [asyncio.ensure_future(self._deliver(rejection)) for rejection in rejections]
        waiting = set(deliveries)
        while waiting:
            _, waiting = await asyncio.wait(waiting, timeout=SLOW_TOPIC_SECONDS)
            if waiting:
                log.warning("Still waiting for the dead-letter topic %r to take %d rejection(s).",
                            self.topic.get_topic_name(), len(waiting))
        return [describe_error(d.exception()) if d.exception() else None for d in deliveries]

    async def _deliver(self, rejection: Rejection) -> None:
        value, extra = fitted(rejection.source.value, self.value_limit)
        delivery = await self.topic.send(
            key=rejection.source.key, value=value, headers=dead_letter_headers(rejection) + extra,
        )
        await delivery


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
