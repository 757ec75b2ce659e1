"""Consumer lag of this worker, best-effort: Kafka's high-water mark less the offset it committed.

Faust keeps what it last committed per partition in ``Consumer._committed_offset`` (a private
attribute, read here only to show it), and ``highwater`` is what the last fetch reported, so
the figures can be a fetch or a commit interval behind. Only this worker's partitions are seen.
"""

from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from restaurant_app.worker import app


def consumer_lag(topic: str) -> dict[str, Any]:
    """Lag per assigned partition of ``topic`` and in total; ``None`` where it is not known yet."""
    try:
        partitions = sorted(tp for tp in app.consumer.assignment() if tp.topic == topic)
        rows = [partition_lag(tp) for tp in partitions]
    except ConsumerNotStarted:
        return {"topic": topic, "total": None, "partitions": [], "note": "the consumer has not started"}
    lags = [row["lag"] for row in rows]
    total = sum(lags) if lags and None not in lags else None
    return {"topic": topic, "total": total, "partitions": rows}


def partition_lag(tp: TP) -> dict[str, Any]:
    highwater = app.consumer.highwater(tp)
    committed = app.consumer._committed_offset.get(tp)
    if highwater is not None and committed is None and highwater == 0:
        committed = 0  # an empty partition: nothing to commit, nothing behind
    lag = highwater - committed if highwater is not None and committed is not None else None
    return {"partition": tp.partition, "highwater": highwater, "committed": committed, "lag": lag}
