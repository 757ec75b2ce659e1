"""``GET /metrics``: our metrics and Faust's sensor, from ``restaurant_app.metrics``, as Prometheus text."""

from faust import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from restaurant_app.metrics import ConsumerLagCollector, ReplicaLagCollector, registry
from restaurant_app.web.health import replica_check
from restaurant_app.web.lag import consumer_lag
from restaurant_app.worker import app, settings

registry.register(ConsumerLagCollector(lambda: consumer_lag(settings.orders_topic)))
replica_lag = ReplicaLagCollector()
registry.register(replica_lag)


@app.page("/metrics")
async def metrics(view: web.View, request: web.Request) -> web.Response:
    """Every metric of the registry, as of now; the consumer lag and the replica's are read now."""
    if settings.reports_database_url:
        replica_lag.status = await replica_check.status()
    return view.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
