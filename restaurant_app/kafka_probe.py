"""Asking a Kafka cluster whether it is there and how many brokers it has; how many copies to keep."""

import asyncio
import logging

from aiokafka import AIOKafkaClient

from restaurant_app.errors import PipelineError
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


async def count_brokers(bootstrap_servers: str, timeout: float = 3.0) -> int:
    """Fetch cluster metadata and return how many brokers it lists."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return len(client.cluster.brokers())
    except Exception as exc:
        raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
    finally:
        await client.close()


async def wait_for_kafka(
    bootstrap_servers: str, timeout: float | None = None, *, log_failures: bool = True
) -> int:
    """Wait until a broker answers, logging each failed try; give up after ``timeout`` s.

    Returns how many brokers the cluster lists."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    backoff = Backoff(first=0.5, longest=10.0)
    while True:
        try:
            return await count_brokers(bootstrap_servers)
        except KafkaUnavailable as exc:
            if deadline is not None and loop.time() + backoff.delay > deadline:
                raise
            if log_failures:
                log.warning(
                    "Kafka at %s is not reachable (%s); trying again in %.0f s.",
                    bootstrap_servers, exc, backoff.delay,
                )
        await backoff.wait()
