"""The simulated point of sale: a timer that publishes orders to Kafka."""

import logging

from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, orders_topic, settings

log = logging.getLogger(__name__)

generator = OrderGenerator(settings.generator_seed, settings.restaurant_timezone)


async def place_orders() -> list[Order]:
    """Publish one tick's orders to the orders topic and return them."""
    orders = generator.orders_for_tick(settings.orders_per_tick)
    for order in orders:
        await orders_topic.send(key=order.order_id, value=order)
    log.info("Placed %d new order(s) on topic %r", len(orders), orders_topic.get_topic_name())
    return orders


@app.timer(interval=settings.order_interval_seconds, on_leader=True)
async def emit_orders() -> None:
    """Every tick, on the leader only, so several workers never duplicate the stream."""
    await place_orders()
