"""Command-line load mode: ``faust -A restaurant_app produce-orders --count N --rate R``, or
``--file orders.jsonl`` to replay real orders, one JSON message a line, as a producer would."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

from faust.cli import AppCommand, option

from restaurant_app.errors import PipelineError
from restaurant_app.kafka_probe import count_brokers, visible_topics
from restaurant_app.models import DEFAULT_STORE, kafka_key
from restaurant_app.progress import Progress
from restaurant_app.traffic import OrderGenerator
from restaurant_app.worker import app, orders_topic, settings, settle_replication


class NotAcknowledged(PipelineError):
    """Kafka did not acknowledge some of the orders the load command published."""


class NoOrdersTopic(PipelineError):
    """The orders topic is missing and this login may not create it."""


async def ensure_orders_topic() -> None:
    """Create ``ORDERS_TOPIC`` only if it is missing: a producer's login (a point of sale's) may
    write it but not create it, and needs not, once a worker has."""
    topic = orders_topic.get_topic_name()
    security = settings.kafka_security
    if topic in await visible_topics(settings.bootstrap_servers, security=security):
        return
    await settle_replication(await count_brokers(settings.bootstrap_servers, security=security))
    try:
        await orders_topic.maybe_declare()
    except Exception as exc:
        login = f" ({security.sasl_username})" if security.sasl_username else ""
        raise NoOrdersTopic(f"The topic {topic!r} does not exist (or this login{login} may not see it),"
                            f" and creating it failed: {exc}. Start a worker first, which creates it,"
                            " or create it as a user that may.") from exc


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


Message = tuple[bytes | str | None, bytes]
"""A Kafka key and value."""


def generated(generator: OrderGenerator, count: int) -> Iterator[Message]:
    """``count`` new orders, spread evenly over the simulated stores, keyed by their store."""
    stores = generator.stores
    for number in range(count):
        order = generator.order(store_id=stores[number % len(stores)].store_id)
        yield kafka_key(order.store_id), order.dumps()


def replayed(path: Path) -> Iterator[Message]:
    """Each non-blank line of ``path`` as it is, keyed by its store (see ``message_key``)."""
    stores: dict[str, str] = {}
    with path.open("rb") as lines:
        for line in lines:
            message = line.rstrip(b"\r\n")
            if message.strip():
                yield message_key(message, stores), message


def message_key(message: bytes, stores: dict[str, str]) -> str | None:
    """The key a producer gives a message: an order's store (``DEFAULT_STORE`` if it names none),
    noted in ``stores`` by order_id; a cancellation's or refund's, its order's store, as noted
    (else ``DEFAULT_STORE``); None for what is no JSON object."""
    try:
        payload = json.loads(message)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    order_id, store = payload.get("order_id"), payload.get("store_id")
    if payload.get("kind") not in (None, "order"):
        return kafka_key(stores.get(order_id, DEFAULT_STORE) if isinstance(order_id, str) else DEFAULT_STORE)
    store = store if isinstance(store, str) else DEFAULT_STORE
    if isinstance(order_id, str):
        stores[order_id] = store
    return kafka_key(store)


def count_lines(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


@app.command(
    option("--count", type=int, default=10_000, show_default=True,
           help="How many orders to publish."),
    option("--rate", type=float, default=0.0, show_default=True,
           help="Orders per second; 0 publishes as fast as possible."),
    option("--seed", type=int, default=None,
           help="Seed for reproducible orders (default: GENERATOR_SEED, else random)."),
    option("--file", type=Path, default=None,
           help="A JSON-lines file of orders to publish line by line, as they are, instead."),
)
async def produce_orders(self: AppCommand, count: int, rate: float, seed: int | None,
                         file: Path | None) -> None:
    """Publish generated orders (or a file's) to ORDERS_TOPIC at a steady rate, to load the pipeline.

    Sends do not wait for one another; the command waits for every acknowledgement at the end
    and fails, saying how many, if Kafka refused any.
    """
    if file is not None:
        messages, count = replayed(file), count_lines(file)
    else:
        generator = OrderGenerator(seed if seed is not None else settings.generator_seed,
                                   settings.restaurant_timezone, settings.simulated_stores)
        messages = generated(generator, count)
    await ensure_orders_topic()
    pacer = Pacer(rate)
    deliveries = Deliveries()
    progress = Progress("Publishing orders", count, stream=self.stderr)
    for sent, (key, value) in enumerate(messages):
        await pacer.wait_turn(sent)
        deliveries.watch(await orders_topic.send(key=key, value=value))
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
