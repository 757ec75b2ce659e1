"""The ceiling Faust itself puts on one worker: ``faust -A bench.floor worker``.

An agent that only acknowledges each batch, with the product app's Faust settings,
consumer (``FastConsumer``, handing on the orders topic in batches) and batch size: no
validation, no database. Whatever rate it reaches, the real worker cannot beat. Each batch
appends ``[time, messages]`` to floor.jsonl in DATA_DIR.
"""

import json
import time

import faust
from faust import StreamT
from faust.types import TransportT

from restaurant_app.batches import take_batches
from restaurant_app.fast_consumer import messages_of
from restaurant_app.kafka_transport import FastTransport
from restaurant_app.worker import app as product_app
from restaurant_app.worker import settings

TUNING = (
    "broker_commit_every", "broker_commit_interval", "stream_buffer_maxsize",
    "consumer_auto_offset_reset", "broker_max_poll_records", "consumer_max_fetch_size",
    "topic_partitions", "web_host", "web_port", "web_stats_enabled", "broker_credentials",
)

PROGRESS = settings.data_dir / "floor.jsonl"
settings.data_dir.mkdir(parents=True, exist_ok=True)


class FloorApp(faust.App):
    """A plain Faust app with the product's consumer."""

    def _new_transport(self) -> TransportT:
        return FastTransport(self.conf.broker_consumer, self, max_batch=settings.batch_max_orders,
                             batched_topics=frozenset({settings.orders_topic}))


app = FloorApp(
    f"{settings.app_id}-floor",
    broker=settings.kafka_url,
    store="memory://",
    datadir=str(settings.data_dir / "faust"),
    **{key: getattr(product_app.conf, key) for key in TUNING},
)

topic = app.topic(settings.orders_topic, key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def acknowledge(stream: StreamT) -> None:
    """Take batches exactly as persist_orders does, and only acknowledge them."""
    batches = take_batches(stream, settings.batch_max_orders, within=settings.batch_within_seconds)
    async for events in batches:
        for event in events:
            await stream.ack(event)
        with PROGRESS.open("a") as progress:
            progress.write(json.dumps([time.time(), sum(len(messages_of(e)) for e in events)]) + "\n")
