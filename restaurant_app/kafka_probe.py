"""Asking a Kafka cluster whether it is there and how many brokers it has; how many copies to keep."""

import asyncio
import logging

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from restaurant_app.errors import PipelineError
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity
from restaurant_app.retry import Backoff

log = logging.getLogger(__name__)


class KafkaUnavailable(PipelineError):
    """No broker answered a metadata request."""


def replication_factor(brokers: int) -> int:
    """Copies of each partition: three, or one per broker where there are fewer."""
    return min(3, brokers)


def min_insync_replicas(replicas: int) -> int:
    """Copies a write with acks=all must reach: two of three, so one broker may fail; else one."""
    return 2 if replicas >= 3 else 1


async def count_brokers(bootstrap_servers: str, timeout: float = 3.0,
                        security: KafkaSecurity = PLAINTEXT) -> int:
    """Fetch cluster metadata and return how many brokers it lists."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000),
        **security.client_options(),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return len(client.cluster.brokers())
    except Exception as exc:
        raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
    finally:
        await client.close()


async def visible_topics(bootstrap_servers: str, timeout: float = 5.0,
                         security: KafkaSecurity = PLAINTEXT) -> set[str]:
    """The topics the cluster shows this login (with ACLs, those it may describe)."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000),
        **security.client_options(),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        return set(metadata.topics())
    except Exception as exc:
        raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
    finally:
        await client.close()


async def wait_for_kafka(
    bootstrap_servers: str, timeout: float | None = None, *, log_failures: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> int:
    """Wait until a broker answers, logging each failed try; give up after ``timeout`` s.

    Returns how many brokers the cluster lists."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    backoff = Backoff(first=0.5, longest=10.0)
    while True:
        try:
            return await count_brokers(bootstrap_servers, security=security)
        except KafkaUnavailable as exc:
            if deadline is not None and loop.time() + backoff.delay > deadline:
                raise
            if log_failures:
                log.warning(
                    "Kafka at %s is not reachable (%s); trying again in %.0f s.",
                    bootstrap_servers, exc, backoff.delay,
                )
        await backoff.wait()


async def topic_retention_ms(bootstrap_servers: str, topics: list[str], timeout: float = 5.0,
                             security: KafkaSecurity = PLAINTEXT) -> dict[str, int | None]:
    """Each topic's ``retention.ms`` (-1: kept for ever; None: no such topic), as the brokers say."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                request_timeout_ms=int(timeout * 1000), **security.client_options())
    try:
        await asyncio.wait_for(admin.start(), timeout)
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        responses = await asyncio.wait_for(admin.describe_configs(resources), timeout)
    except Exception as exc:
        raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
    finally:
        await admin.close()
    found: dict[str, int | None] = dict.fromkeys(topics)
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            values = {entry[0]: entry[1] for entry in entries}
            if error_code == 0 and values.get("retention.ms") is not None:
                found[name] = int(values["retention.ms"])
    return found
