"""Command-line load mode: ``faust -A restaurant_app produce-orders --count N --rate R``."""

import asyncio
import time

from faust.cli import AppCommand, option

from restaurant_app.errors import PipelineError
from restaurant_app.kafka_probe import count_brokers
from restaurant_app.progress import Progress
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, orders_topic, settings, settle_replication


class NotAcknowledged(PipelineError):
    """Kafka did not acknowledge some of the orders the load command published."""


class Deliveries:
    """Follows each publication's delivery without waiting for it, and counts the failed ones."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future] = set()
        self.failed = 0
        self.first_error: BaseException | None = None

    def watch(self, delivery: asyncio.Future) -> None:
        self.pending.add(delivery)
        delivery.add_done_callback(self._settle)

    def _settle(self, delivery: asyncio.Future) -> None:
        self.pending.discard(delivery)
        error = asyncio.CancelledError() if delivery.cancelled() else delivery.exception()
        if error is not None:
            self.failed += 1
            self.first_error = self.first_error or error

    async def settled(self) -> None:
        """Wait until Kafka has acknowledged or refused every publication watched."""
        await asyncio.gather(*self.pending, return_exceptions=True)


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
    """Publish generated orders to ORDERS_TOPIC at a steady rate, to load the pipeline.

    Sends do not wait for one another; the command waits for every acknowledgement at the end
    and fails, saying how many, if Kafka refused any.
    """
    generator = OrderGenerator(
        seed if seed is not None else settings.generator_seed, settings.restaurant_timezone
    )
    await settle_replication(await count_brokers(settings.bootstrap_servers))
    await orders_topic.maybe_declare()
    pacer = Pacer(rate)
    deliveries = Deliveries()
    progress = Progress("Publishing orders", count, stream=self.stderr)
    for sent in range(count):
        await pacer.wait_turn(sent)
        order = generator.order()
        deliveries.watch(await orders_topic.send(key=order.order_id, value=order.dumps()))
        progress.update(sent + 1)
    await deliveries.settled()
    progress.finish()
    elapsed = time.monotonic() - pacer.start
    if deliveries.failed:
        raise NotAcknowledged(f"Kafka did not acknowledge {deliveries.failed} of {count} order(s);"
                              f" the first error: {deliveries.first_error}")
    self.say(
        f"Published {count} order(s) to {orders_topic.get_topic_name()!r} in {elapsed:.1f} s"
        f" ({count / elapsed:,.0f} orders/s)"
    )
