"""Command-line load mode: ``faust -A restaurant_app produce-orders --count N --rate R``."""

import asyncio
import time

from faust.cli import AppCommand, option

from restaurant_app import erasure
from restaurant_app.database import outage_as_unavailable
from restaurant_app.errors import PipelineError
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers, topic_retention_ms
from restaurant_app.progress import Progress
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, database, orders_topic, settings, settle_replication


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


@app.command(
    option("--customer-id", type=int, required=True, help="The customer to erase."),
    option("--name", "also_named", multiple=True,
           help="A name the customer used that no stored order of theirs carries (a rejected"
                " message's, say); the names on their stored orders are found by id. Repeatable."),
    option("--dry-run", is_flag=True, default=False, help="Say what would change; change nothing."),
)
async def erase_customer(self: AppCommand, customer_id: int, also_named: tuple[str, ...],
                                 dry_run: bool) -> None:
    """Erase one customer at their request (LGPD): anonymise their orders, empty the rejected
    messages that name them, delete their report rows; say what Kafka still keeps, and how long."""
    await database.migrate()
    with outage_as_unavailable():
        async with await database.connect() as conn:
            erased = await erasure.erase_customer(conn, customer_id, list(also_named), dry_run=dry_run)
    self.say(erased.describe(dry_run))
    self.say(await kafka_copies([settings.orders_topic, settings.dead_letter_topic]))


async def kafka_copies(topics: list[str]) -> str:
    """What Kafka keeps of the erased customer's messages, which no one can edit there."""
    try:
        retention = await topic_retention_ms(settings.bootstrap_servers, topics)
    except KafkaUnavailable as exc:
        return f"Kafka could not be asked how long it keeps topics {', '.join(topics)}: {exc}."
    kept = "; ".join(f"{topic!r} {describe_retention(ms)}" for topic, ms in retention.items())
    return (f"Kafka's copies of the messages cannot be edited; they are deleted with their"
            f" segment when the topic's retention ends: {kept}.")


def describe_retention(ms: int | None) -> str:
    if ms is None:
        return "does not exist"
    if ms < 0:
        return "keeps messages for ever (retention.ms=-1)"
    return f"keeps messages {ms / 86_400_000:g} day(s) (retention.ms={ms})"
