"""The worker process's parts, built once from the environment: the Faust app, its topics, its database.

``faust -A restaurant_app worker`` starts it.
"""

import gc
import logging

import faust
from faust.types import TransportT
from faust.web import Web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from restaurant_app.database import Database, RoleDatabase
from restaurant_app.kafka_probe import (
    min_insync_replicas,
    replication_factor,
    wait_for_kafka,
)
from restaurant_app.kafka_transport import FastTransport, broker_credentials
from restaurant_app.lean_monitor import lean_monitor
from restaurant_app.logs import faust_logging_config
from restaurant_app.metrics import registry
from restaurant_app.replica import ReplicaDatabase
from restaurant_app.settings import settings_or_exit
from restaurant_app.web.login import login_middleware

log = logging.getLogger(__name__)

settings = settings_or_exit()


class RestaurantWeb(AiohttpWeb):
    """Faust's web server with one of Faust's own views: its statistics, at /stats/.

    Faust would also serve /router/ and /table/ (cluster layout, table contents) and its
    statistics or an index at /; the URLs we serve are our pages and /stats/ only.
    """

    default_blueprints = (("/stats", "faust.web.apps.stats:blueprint"),)
    production_blueprints = debug_blueprints = optional_blueprints = ()

    def __init__(self, app: faust.App, **kwargs: object) -> None:
        super().__init__(app, **kwargs)
        self.web_app.middlewares.append(login_middleware(settings.dashboard_token))


class RestaurantWorker(faust.Worker):
    """Faust's worker, logging at LOG_LEVEL whatever its ``-l`` says, and without its terminal
    spinner, whose escape codes would garble logs read by anything but a terminal."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, logging.getLevelNamesMapping()[settings.log_level])


class RestaurantApp(faust.App):
    """A Faust app that waits for Kafka at start-up instead of failing with a traceback."""

    async def on_first_start(self) -> None:
        brokers = await wait_for_kafka(settings.bootstrap_servers, security=settings.kafka_security)
        await settle_replication(brokers)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()

    async def on_started(self) -> None:
        await super().on_started()
        settle_garbage_collector()

    def _new_web(self) -> Web:
        """Faust's factory of ``app.web``: our server instead of the one ``conf.web`` names."""
        return RestaurantWeb(self)

    def _new_transport(self) -> TransportT:
        """Faust's factory of ``app.transport``: its aiokafka transport with our consumer and producer;
        the orders topic's messages reach the persistence agent in batches."""
        return FastTransport(self.conf.broker_consumer, self, max_bytes_in_flight=settings.ingest_max_bytes,
                             batched_topics=frozenset({settings.orders_topic}),
                             max_batch=settings.batch_max_orders)


PRODUCER_BATCH_BYTES = 256 * 1024
"""The most bytes of orders the producer sends to a partition in one request (aiokafka's 16 KiB
default held about 37 orders: with one request in flight to a broker, that bounded a store's
orders to 37 per round trip to Kafka; this holds about 590). aiokafka does not split a batch a
topic refuses as too large, so it stays well under Kafka's usual 1 MB max.message.bytes."""

app = RestaurantApp(
    settings.app_id,
    broker=settings.kafka_url,
    broker_credentials=broker_credentials(settings.kafka_security),
    store="memory://",
    datadir=str(settings.data_dir / "faust"),
    autodiscover=["agents", "restaurant_app.web", "restaurant_app.commands"],
    origin="restaurant_app",
    topic_partitions=settings.orders_topic_partitions,
    topic_replication_factor=settings.topic_replication_factor or 1,  # see settle_replication
    producer_acks=-1,  # acks=all: a send succeeds once every in-sync replica has the message
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    web_stats_enabled=True,
    logging_config=faust_logging_config(settings),
    Worker=RestaurantWorker,
    broker_commit_every=10_000,
    broker_commit_interval=1.0,
    stream_buffer_maxsize=20_000,
    consumer_auto_offset_reset="earliest",
    producer_linger=0.005,
    producer_max_batch_size=PRODUCER_BATCH_BYTES,
    producer_request_timeout=30.0,  # Faust waits 20 min by default before a failed send says so
)

# Our own warnings say when PostgreSQL is down; the pool's would repeat them per connection.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
# aiokafka says "Authenticated as <user>" at INFO for every connection a SASL login opens (each
# health check's, too); its warnings and errors still show.
logging.getLogger("aiokafka.conn").setLevel(logging.WARNING)

# Faust's Prometheus sensor, named faust_*, in our registry: GET /metrics serves it with ours.
# Its per-message metrics are brought up to date at each scrape, not at each message.
app.monitor = lean_monitor(registry)

database = Database(settings.database_url)

ingest_database = (
    RoleDatabase(settings.ingest_database_url, database) if settings.ingest_database_url else database
)
"""Where orders, their events and rejections are stored: ``INGEST_DATABASE_URL``'s role, which
may insert them and nothing more, else ``database``."""

web_database = RoleDatabase(settings.web_database_url, database) if settings.web_database_url else database
"""Where the dashboard reads: ``WEB_DATABASE_URL``'s read-only role, else ``database``."""

reports_database = (
    ReplicaDatabase(settings.reports_database_url) if settings.reports_database_url else web_database
)
"""Where ``/reports`` reads: the read replica ``REPORTS_DATABASE_URL`` names, else ``web_database``."""

# Both topics are created at start-up (the orders topic by Faust, as an agent reads it; the other by
# declare_dead_letter_topic) with ORDERS_TOPIC_PARTITIONS partitions and the replication that
# settle_replication chose. A topic that exists already is left as it is.
orders_topic = app.topic(
    settings.orders_topic, key_serializer="raw", value_serializer="raw", internal=True
)
"""Orders as JSON (``Order.dumps``), read as raw bytes so that a malformed message is kept as it came."""

dead_letter_topic = app.topic(
    settings.dead_letter_topic, key_serializer="raw", value_serializer="raw", internal=True
)
"""Messages that are not valid orders, byte for byte, with the reason in a header."""


@app.task
async def declare_dead_letter_topic() -> None:
    """Create the dead-letter topic at start: nothing reads it, so Faust alone would not."""
    await dead_letter_topic.maybe_declare()


GC_YOUNGEST_THRESHOLD = 50_000
"""Objects made (less those freed) between two collections of Python's youngest generation. Its
default, 700, ran one about every 90 orders of a batch (an order leaves some 8 tracked objects)
and a full collection, over every object of the process, about every 10,000: together about a
fifth of the CPU of validating an order."""


def settle_garbage_collector() -> None:
    """Once started: leave what start-up made to no further collection, and collect less often."""
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, *gc.get_threshold()[1:])


async def settle_replication(brokers: int) -> None:
    """Choose the replicas of the topics this app creates, before it creates any.

    TOPIC_REPLICATION_FACTOR if set, else three or as many as the cluster's ``brokers``;
    with three, a write needs two in-sync copies (``min.insync.replicas``), so one broker may fail.
    """
    replicas = settings.topic_replication_factor
    if replicas is None:
        replicas = replication_factor(brokers)
    min_insync = min_insync_replicas(replicas)
    app.conf.topic_replication_factor = replicas
    retention_ms = retention_ms_of(settings.topic_retention_hours)
    for topic in (orders_topic, dead_letter_topic):
        topic.config = {**(topic.config or {}), "min.insync.replicas": str(min_insync),
                        "retention.ms": str(retention_ms)}
    log.info("New topics get %d partition(s), %d replica(s), min.insync.replicas=%d and"
             " retention.ms=%d.", settings.orders_topic_partitions, replicas, min_insync, retention_ms)


def retention_ms_of(hours: int) -> int:
    """TOPIC_RETENTION_HOURS as Kafka's ``retention.ms``: 0 hours keeps messages for ever (-1)."""
    return hours * 3_600_000 if hours else -1
