"""The consumer: validates orders from Kafka and stores them in PostgreSQL in batches."""

import logging
from collections.abc import Sequence
from datetime import timedelta

from faust import StreamT
from faust.types import EventT

from restaurant_app.app import app, database, dead_letter_topic, raw_orders_topic
from restaurant_app.database import Rejection, until_available
from restaurant_app.models import Order
from restaurant_app.settings import settings
from restaurant_app.validation import InvalidOrder, parse_order

log = logging.getLogger(__name__)
MAX_CLOCK_SKEW = timedelta(seconds=settings.max_clock_skew_seconds)

def sort_batch(events: Sequence[EventT]) -> tuple[list[Order], list[Rejection]]:
    """Split a batch of raw messages into valid orders and rejections with their reasons."""
    orders: dict[str, Order] = {}
    rejections: list[Rejection] = []
    for event in events:
        message = event.message
        try:
            order = parse_order(message.value, max_clock_skew=MAX_CLOCK_SKEW)
        except InvalidOrder as exc:
            rejections.append(
                Rejection(message.topic, message.partition, message.offset,
                          message.value or b"", str(exc), message.key)
            )
        else:
            orders.setdefault(order.order_id, order)
    return list(orders.values()), rejections


async def send_to_dead_letter(rejection: Rejection) -> None:
    """Publish a rejected message unchanged, with the reason and its origin in headers."""
    headers = {
        "reason": rejection.reason.encode(),
        "source-topic": rejection.topic.encode(),
        "source-partition": str(rejection.partition).encode(),
        "source-offset": str(rejection.offset).encode(),
    }
    delivery = await dead_letter_topic.send(
        key=rejection.key, value=rejection.raw, headers=headers
    )
    await delivery


@app.agent(raw_orders_topic, name="persist-orders")
async def persist_orders(stream: StreamT) -> None:
    """Store every valid order exactly once; route everything else to the dead-letter topic.

    A batch's offsets are acknowledged only after its transaction commits, so
    a crash or an outage makes Kafka deliver it again, and the idempotent
    insert turns that redelivery into no new rows.
    """
    await database.ready()
    batches = stream.noack_take(settings.batch_max_orders, within=settings.batch_within_seconds)
    async for events in batches:
        orders, rejections = sort_batch(events)
        for rejection in rejections:
            log.warning(
                "Rejected the message at %s[%d]@%d: %s",
                rejection.topic, rejection.partition, rejection.offset, rejection.reason,
            )
            await send_to_dead_letter(rejection)
        stored = await until_available(
            lambda: database.save(orders, rejections),  # noqa: B023 - awaited right here
            f"storing {len(orders)} order(s), whose offsets stay uncommitted until then",
        )
        for event in events:
            await stream.ack(event)
        log.info(
            "Stored %d new order(s) in PostgreSQL (%d already there, %d rejected)",
            stored, len(orders) - stored, len(rejections),
        )
