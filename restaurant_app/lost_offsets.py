"""Orders Kafka no longer held when the worker asked for them: an alarm, never a silent skip.

A partition's position falls out of the topic's range when the topic's retention deleted orders
the worker had not stored yet (a stall longer than ``retention.ms``), or when the log was
truncated. aiokafka then moves to the oldest offset Kafka still holds (the worker's
``consumer_auto_offset_reset="earliest"``, so nothing Kafka holds is skipped) and says so at
INFO on its fetcher's logger. ``install`` listens there (without letting that logger's other
INFO lines through when the worker logs at WARNING) and turns each such line into an error
in plain words, a count in ``restaurant_kafka_offsets_out_of_range_total``, and a part of
``/health`` that stays down, with what was lost, until the worker restarts.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from restaurant_app import metrics

log = logging.getLogger(__name__)

FETCHER_LOGGER = "aiokafka.consumer.fetcher"
OUT_OF_RANGE = "Fetch offset %s is out of range for partition %s"
"""The start of aiokafka's own line (``Fetcher._proc_fetch_request``)."""


@dataclass
class LostOffsets:
    """The positions Kafka no longer held, newest last."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def record(self, topic: str, partition: int, offset: int) -> None:
        self.seen.append({"topic": topic, "partition": partition, "offset": offset, "at": time.time()})
        del self.seen[:-20]
        metrics.offsets_out_of_range.labels(topic=topic).inc()
        log.error(
            "Kafka no longer holds %s[%d] from offset %d, where this worker was to read next: orders"
            " there may have been deleted by the topic's retention before they were stored. The worker"
            " goes on from the oldest offset Kafka holds; /health shows this until it restarts.",
            topic, partition, offset,
        )

    def status(self) -> dict[str, Any]:
        if not self.seen:
            return {"ok": True}
        return {"ok": False, "error": "Kafka deleted messages before they were stored (see out_of_range)",
                "out_of_range": self.seen}


lost_offsets = LostOffsets()


class OutOfRangeAlarm(logging.Filter):
    """Hears aiokafka's out-of-range line and records it in ``lost_offsets``.

    A filter on the fetcher's logger, which ``install`` opens to INFO: it lets through only the
    records its parent's level passes, so the worker's log level still holds there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(OUT_OF_RANGE):
            offset, tp = record.args
            lost_offsets.record(tp.topic, tp.partition, int(offset))
        return record.levelno >= logging.getLogger(FETCHER_LOGGER).parent.getEffectiveLevel()


def install() -> None:
    """Listen on aiokafka's fetcher logger at INFO, whatever the worker's log level (once)."""
    fetcher = logging.getLogger(FETCHER_LOGGER)
    if not any(isinstance(each, OutOfRangeAlarm) for each in fetcher.filters):
        fetcher.addFilter(OutOfRangeAlarm())
        fetcher.setLevel(logging.INFO)
