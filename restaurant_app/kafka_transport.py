"""Faust's aiokafka transport, with our consumer, an idempotent producer and a fetcher that survives
records it cannot decode (``restaurant_app.kafka_records``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers import aiokafka
from faust.types.auth import CredentialsT

from restaurant_app import kafka_records, lost_offsets
from restaurant_app.fast_consumer import DEFAULT_MAX_BATCH, FastConsumer
from restaurant_app.kafka_security import KafkaSecurity

STOP_SECONDS = 30.0
"""How long a stopping producer waits for Kafka to take the batches it still holds."""
DEFAULT_MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024


class IdempotentProducer(aiokafka.Producer):
    """Faust's aiokafka producer with Kafka's idempotence switched on.

    Delivery guarantee: each ``send`` is written to its partition once, in order, while the
    process lives. A batch whose acknowledgement was lost (a timeout, a dropped connection, a
    process paused past its request timeout) is sent again with the same producer id and
    sequence number, and the broker keeps only the first copy. Such batches are retried until
    Kafka takes them rather than expired, so a send waits out an outage instead of failing;
    only errors no retry can mend (a record too large, a refused topic) reach the caller.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}

    async def on_stop(self) -> None:
        """Stop; when Kafka is away, give up on undelivered batches after ``STOP_SECONDS``."""
        try:
            await asyncio.wait_for(super().on_stop(), STOP_SECONDS)
        except TimeoutError:
            self.log.warning("Kafka did not take the last messages within %.0f s of stopping;"
                             " they were not sent.", STOP_SECONDS)


class FastTransport(aiokafka.Transport):
    """Faust's aiokafka transport with ``FastConsumer``, ``IdempotentProducer`` and lenient record reading."""

    Consumer = FastConsumer
    Producer = IdempotentProducer

    def __init__(self, *args: Any, max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
                 batched_topics: frozenset[str] = frozenset(), max_batch: int = DEFAULT_MAX_BATCH,
                 **kwargs: Any) -> None:
        kafka_records.install()
        lost_offsets.install()
        self.max_bytes_in_flight = max_bytes_in_flight
        """Most bytes of consumed messages not yet acknowledged (see ``FastConsumer``)."""
        self.batched_topics = batched_topics
        """Topics whose messages reach their agent in batches (``MessageBatch``)."""
        self.max_batch = max_batch
        """Most messages in one batch."""
        super().__init__(*args, **kwargs)


def broker_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """``security`` as Faust's ``broker_credentials``, which its consumer, producer and topic
    creation all use; None for plain TCP."""
    if security.uses_sasl:
        return SASLCredentials(username=security.sasl_username, password=security.password(),
                               ssl_context=security.ssl_context(), mechanism=security.sasl_mechanism)
    if security.uses_tls:
        return SSLCredentials(security.ssl_context())
    return None
