"""Faust's Prometheus sensor with its per-event bookkeeping moved to scrape time.

``PrometheusMonitor`` updates several Prometheus metrics for every message and every stream
event (label lookups, a lock per increment, a histogram observation): about 12 µs of CPU per
order; its consumer sets the partition's end offset gauge for every message too (3-4 µs).
``LeanPrometheusMonitor`` keeps only Faust's plain ``Monitor`` counters and end offsets per
event (what ``/stats/`` shows) and copies them into the same ``faust_*`` metrics when
``/metrics`` is scraped, through ``FaustMetricsCollector``. Per-commit, per-send and per-request hooks are
Faust's, unchanged.

The metrics are Faust's, under names that follow Prometheus' conventions (``faust_metrics``):
counters end in ``_total`` without a ``total_`` in front, gauges do not, latencies are in
seconds (Faust observes milliseconds), and no name says ``per_topic`` for what a label says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import MS_LATENCY_BUCKETS, FaustMetrics, PrometheusMonitor
from faust.types import TP, EventT, Message, StreamT
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from restaurant_app.fast_consumer import MessageBatch


class LeanPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor; message and event metrics are brought up to date by ``publish``."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._published: Counter[Any] = Counter()

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Faust's counts, a batch counting as its messages."""
        Monitor.on_message_in(self, tp, offset, message)
        if isinstance(message, MessageBatch):
            more = len(message.messages) - 1
            self.messages_received_total += more
            self.messages_active += more
            self.messages_received_by_topic[tp.topic] += more

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> dict | None:
        return Monitor.on_stream_event_in(self, tp, offset, stream, event)

    def on_stream_event_out(self, tp: TP, offset: int, stream: StreamT, event: EventT,
                            state: dict | None = None) -> None:
        Monitor.on_stream_event_out(self, tp, offset, stream, event, state)

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        Monitor.on_message_out(self, tp, offset, message)
        if isinstance(message, MessageBatch):
            self.messages_active -= len(message.messages) - 1

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        """Faust's record of a partition's end offset, which its consumer makes for every message."""
        Monitor.track_tp_end_offset(self, tp, offset)

    def publish(self) -> None:
        """Bring the per-message and per-event ``faust_*`` metrics up to date with the counters."""
        metrics = self._metrics
        for tp, offset in self.tp_end_offsets.items():
            metrics.topic_partition_end_offset.labels(topic=tp.topic, partition=tp.partition).set(offset)
        self._add(metrics.messages_received, "received", self.messages_received_total)
        for topic, count in self.messages_received_by_topic.items():
            self._add(metrics.messages_received_per_topics.labels(topic=topic), ("topic", topic), count)
        for tp, offset in self.tp_read_offsets.items():
            metrics.messages_received_per_topics_partition.labels(
                topic=tp.topic, partition=tp.partition).set(offset)
        metrics.active_messages.set(self.messages_active)
        metrics.total_active_events.set(self.events_active)
        new_events = self._add(metrics.total_events, "events", self.events_total)
        for stream, key in self.stream_lookup.items():
            label = f"stream.{self._stream_label(stream)}.events"
            self._add(metrics.total_events_per_stream.labels(stream=label), ("stream", key),
                      self.events_by_stream[key])
        # Faust keeps the last ``max_avg_history`` event runtimes: a sample when events were many.
        for seconds in list(self.events_runtime)[-new_events:] if new_events else ():
            metrics.events_runtime_latency.observe(self.secs_to_ms(seconds))

    def _add(self, counter: Any, key: Any, total: int) -> int:
        """Increase ``counter`` by what ``total`` grew since the last publish; return that growth."""
        growth = total - self._published[key]
        if growth > 0:
            counter.inc(growth)
            self._published[key] = total
        return max(growth, 0)


class FaustMetricsCollector(Collector):
    """Faust's metrics for ``GET /metrics``: published from the monitor, then read from their registry."""

    def __init__(self, monitor: LeanPrometheusMonitor, source: CollectorRegistry) -> None:
        self.monitor = monitor
        self.source = source

    def collect(self) -> Iterator[Metric]:
        self.monitor.publish()
        yield from self.source.collect()


class SecondsHistogram:
    """A histogram in seconds that Faust's sensor observes in milliseconds."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(name, documentation, registry=registry,
                                   buckets=[ms / 1000 for ms in MS_LATENCY_BUCKETS])

    def observe(self, milliseconds: float) -> None:
        self.histogram.observe(milliseconds / 1000)


def faust_metrics(registry: CollectorRegistry) -> FaustMetrics:
    """Faust's sensor metrics in ``registry``, named by Prometheus' conventions (``faust_*``)."""
    def counter(name: str, documentation: str, *labels: str) -> CounterMetric:
        return CounterMetric(f"faust_{name}", documentation, labels, registry=registry)

    def gauge(name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(f"faust_{name}", documentation, labels, registry=registry)

    def seconds(name: str, documentation: str) -> Any:
        return SecondsHistogram(f"faust_{name}_seconds", documentation, registry)

    return FaustMetrics(
        messages_received=counter("messages_received", "Messages received from Kafka."),
        active_messages=gauge("messages_active", "Messages received and not yet acknowledged."),
        messages_received_per_topics=counter(
            "topic_messages_received", "Messages received from Kafka, per topic.", "topic"),
        messages_received_per_topics_partition=gauge(
            "topic_partition_read_offset", "Offset of the last message read, per topic and partition.",
            "topic", "partition"),
        events_runtime_latency=seconds("event_runtime", "Seconds an agent took over a stream event."),
        total_events=counter("events", "Stream events received."),
        total_active_events=gauge("events_active", "Stream events under way."),
        total_events_per_stream=counter("stream_events", "Stream events received, per stream.", "stream"),
        table_operations=counter("table_operations", "Table operations.", "table", "operation"),
        topic_messages_sent=counter("topic_messages_sent", "Messages sent, per topic.", "topic"),
        total_sent_messages=counter("messages_sent", "Messages sent."),
        producer_send_latency=seconds("producer_send", "Seconds from a send to Kafka's acknowledgement."),
        total_error_messages_sent=counter("message_send_errors", "Sends that failed."),
        producer_error_send_latency=seconds("producer_send_error", "Seconds from a send to its failure."),
        assignment_operations=counter(
            "assignments", "Partition assignments, by how they ended: completed or error.", "operation"),
        assign_latency=seconds("assignment", "Seconds a partition assignment took."),
        total_rebalances=gauge("rebalances_in_progress", "Rebalances under way."),
        total_rebalances_recovering=gauge("rebalances_recovering", "Rebalances recovering their tables."),
        rebalance_done_consumer_latency=seconds(
            "rebalance_consumer_done", "Seconds until the consumer told the broker its rebalance was done."),
        rebalance_done_latency=seconds("rebalance_done", "Seconds a rebalance took to finish."),
        count_metrics_by_name=gauge("named_counts", "Faust's own counts, by name.", "metric"),
        http_status_codes=counter("http_responses", "Web server responses, by status code.", "status_code"),
        http_latency=seconds("http_response", "Seconds the web server took to respond."),
        topic_partition_end_offset=gauge(
            "topic_partition_end_offset", "Kafka's end offset, per topic and partition.",
            "topic", "partition"),
        topic_partition_offset_commited=gauge(
            "topic_partition_committed_offset", "Offset committed, per topic and partition.",
            "topic", "partition"),
        consumer_commit_latency=seconds("consumer_commit", "Seconds an offset commit took."),
    )


def lean_monitor(registry: CollectorRegistry) -> LeanPrometheusMonitor:
    """A ``LeanPrometheusMonitor`` whose ``faust_*`` metrics ``registry`` serves."""
    faust_registry = CollectorRegistry()
    monitor = LeanPrometheusMonitor(metrics=faust_metrics(faust_registry))
    registry.register(FaustMetricsCollector(monitor, faust_registry))
    return monitor
