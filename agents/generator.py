"""The simulated point of sale: a timer that publishes orders to Kafka, each one acknowledged.

It runs only with ``ORDER_SIMULATOR=on`` (the default, for demos); a restaurant whose points of
sale send real orders turns it off, so that no invented order mixes with its sales.
"""

import logging

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from restaurant_app.errors import PipelineError
from restaurant_app.models import Order, OrderEvent, kafka_key
from restaurant_app.retry import Backoff
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, orders_topic, settings

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 30.0

generator = OrderGenerator(settings.generator_seed, settings.restaurant_timezone, settings.simulated_stores,
                           whole_bills=True)


class PublishFailed(PipelineError):
    """Kafka acknowledged none of the attempts to publish an order."""


async def publish(order: Order | OrderEvent, store: str) -> None:
    """Publish ``order`` (or a cancellation or refund of an order) of ``store``, keyed by the store
    so that it follows the store's earlier orders on their partition, and wait until Kafka
    acknowledges it; retry with backoff when it does not.

    The producer is idempotent (``IdempotentProducer``): a lost acknowledgement is retried
    inside it and written once. What reaches this loop is a send Kafka never wrote (its
    topic's metadata did not come in time, or the broker refused the record), so sending the
    same ``Order`` again cannot make a copy. Should one slip through all the same, it carries
    the same order id and content, which the consumer's storage (keyed on ``order_id``) keeps once.
    Raises ``PublishFailed`` after ``PUBLISH_ATTEMPTS`` failed attempts.
    """
    backoff = Backoff(FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS)
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            delivery = await orders_topic.send(key=kafka_key(store), value=order.dumps())
            await delivery
            return
        except (KafkaError, ProducerSendError) as exc:
            if attempt == PUBLISH_ATTEMPTS:
                raise PublishFailed(
                    f"Kafka did not acknowledge order {order.order_id} in {attempt} attempts: {exc}"
                ) from exc
            log.warning("Kafka did not acknowledge order %s (attempt %d of %d: %s); trying again in %.1f s",
                        order.order_id, attempt, PUBLISH_ATTEMPTS, exc, backoff.delay)
        await backoff.wait()


async def place_orders() -> list[Order]:
    """Publish one tick's orders, one after the other; return those Kafka acknowledged.

    Never raises, so that a failure cannot end the timer: it is logged, the rest of the
    tick's orders are not placed, and the next tick starts afresh.
    """
    orders: list[Order] = []
    placed = 0
    try:
        orders = generator.orders_for_tick(settings.orders_per_tick)
        for order in orders:
            await publish(order, order.store_id)
            placed += 1
        events = generator.events_for(orders)
        stores = {order.order_id: order.store_id for order in orders}
        for event in events:  # after their orders, on their stores' partitions
            await publish(event, stores[event.order_id])
        if events:
            log.info("Placed %d cancellation(s) or refund(s) of this tick's orders", len(events))
    except PublishFailed as exc:
        log.error("%s. Gave up on this tick after %d of %d order(s); the next tick carries on.",
                  exc, placed, len(orders))
    except Exception:
        log.exception("The order generator failed after placing %d of %d order(s) this tick;"
                      " the next tick carries on.", placed, len(orders))
    else:
        log.info("Placed %d new order(s) on topic %r", placed, orders_topic.get_topic_name())
    return orders[:placed]


async def emit_orders() -> None:
    """Every tick, on the leader only, so several workers never duplicate the stream."""
    await place_orders()


async def say_the_simulator_is_off() -> None:
    log.info("The order simulator is off (ORDER_SIMULATOR=off): the only orders are those points of"
             " sale send to topic %r.", orders_topic.get_topic_name())


if settings.order_simulator:
    app.timer(interval=settings.order_interval_seconds, on_leader=True)(emit_orders)
else:
    app.task(say_the_simulator_is_off)
