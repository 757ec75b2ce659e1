"""Command-line load mode: ``faust -A restaurant_app produce-orders --count N --rate R``."""

import asyncio
import time

from faust.cli import AppCommand, option

from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, orders_topic, settings, settle_replication


class Pacer:
    """Spreads sends evenly over time at ``rate`` per second; a rate of 0 means no pause."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    async def wait_turn(self, sent: int) -> None:
        """Sleep until the order numbered ``sent`` (from 0) is due."""
        if self.rate <= 0:
            return
        ahead = self.start + sent / self.rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)


@app.command(
    option("--count", type=int, default=10_000, show_default=True,
           help="How many orders to publish."),
    option("--rate", type=float, default=0.0, show_default=True,
           help="Orders per second; 0 publishes as fast as possible."),
    option("--seed", type=int, default=None,
           help="Seed for reproducible orders (default: GENERATOR_SEED, else random)."),
)
async def produce_orders(self: AppCommand, count: int, rate: float, seed: int | None) -> None:
    """Publish generated orders to ORDERS_TOPIC at a steady rate, to load the pipeline."""
    generator = OrderGenerator(
        seed if seed is not None else settings.generator_seed, settings.restaurant_timezone
    )
    await settle_replication()
    await orders_topic.maybe_declare()
    pacer = Pacer(rate)
    for sent in range(count):
        await pacer.wait_turn(sent)
        order = generator.order()
        await orders_topic.send(key=order.order_id, value=order)
    await app.producer.flush()
    elapsed = time.monotonic() - pacer.start
    self.say(
        f"Published {count} order(s) to {orders_topic.get_topic_name()!r} in {elapsed:.1f} s"
        f" ({count / elapsed:,.0f} orders/s)"
    )
