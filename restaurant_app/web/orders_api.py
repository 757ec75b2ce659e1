"""``POST /api/orders``: points of sale send orders over HTTP, one or a batch.

Each order is checked by ``parse_order``, as on Kafka, and published to the orders topic keyed
by its ``order_id``; the answer is 202 only once Kafka has acknowledged every order of the
request (``acks=all``). A batch is all or nothing: one bad order and none is published. Sending
the same order again is safe: the worker stores an ``order_id`` once. The contract is
``docs/ORDER_CONTRACT.md``.
"""

import asyncio
import functools
import hmac
import logging
from datetime import timedelta

import msgspec
from aiokafka.errors import KafkaError
from faust import web
from faust.exceptions import ProducerSendError

from restaurant_app.contract import MAX_BATCH_ORDERS, MAX_BODY_BYTES, RETRY_AFTER_SECONDS, openapi
from restaurant_app.errors import PipelineError
from restaurant_app.models import Order, kafka_key
from restaurant_app.settings import is_loopback
from restaurant_app.validation import MAX_MESSAGE_BYTES, InvalidOrder, parse_order
from restaurant_app.web.endpoint import NO_STORE, error
from restaurant_app.worker import app, orders_topic, settings

log = logging.getLogger(__name__)

KAFKA_WAIT_SECONDS = 15.0
READ_CHUNK_BYTES = 64 * 1024

_BATCH = msgspec.json.Decoder(list[msgspec.Raw])


class Refused(PipelineError):
    """The request cannot be taken: its HTTP status, its reason, any extra fields and headers;
    answered in the web's one error shape (``endpoint.error``)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None, **extra: object):
        super().__init__(reason)
        self.status, self.reason, self.headers, self.extra = status, reason, headers or {}, extra


on_loopback = functools.cache(is_loopback)
"""``is_loopback``, parsed once for the web server's one address rather than at each request."""


def check_token(authorization: str | None, token: str, host: str) -> None:
    """Refuse a request without the bearer ``token``; with no token set, refuse beyond loopback."""
    if not token:
        if on_loopback(host):
            return
        raise Refused(403, "orders are taken over the network only with ORDERS_API_TOKEN set")
    if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
        raise Refused(401, "missing or wrong token: send 'Authorization: Bearer <ORDERS_API_TOKEN>'",
                      {"WWW-Authenticate": "Bearer"})


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, refused with 413 as soon as it is longer than ``limit`` bytes."""
    too_large = Refused(413, f"the body is over {limit} bytes; send at most {MAX_BATCH_ORDERS} orders"
                             f" of at most {MAX_MESSAGE_BYTES} bytes each")
    if (request.content_length or 0) > limit:
        raise too_large
    chunks, size = [], 0
    while chunk := await request.content.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def split_batch(body: bytes) -> tuple[list[bytes], bool]:
    """The messages of ``body``, each as sent: a JSON array is a batch, anything else one order."""
    if not body.lstrip().startswith(b"["):
        return [body], False
    try:
        messages = [bytes(raw) for raw in _BATCH.decode(body)]
    except msgspec.DecodeError as exc:
        raise Refused(400, f"the body is not a JSON array of orders: {exc}"[:200]) from None
    if not messages:
        raise Refused(400, "the batch is empty")
    if len(messages) > MAX_BATCH_ORDERS:
        raise Refused(413, f"the batch has {len(messages)} orders, the limit is {MAX_BATCH_ORDERS}")
    return messages, True


def parse_all(messages: list[bytes], batch: bool, max_clock_skew: timedelta) -> list[Order]:
    """Every message as an order, or a 400 with each bad one's reason (and index, in a batch)."""
    orders, rejected = [], []
    for index, raw in enumerate(messages):
        try:
            orders.append(parse_order(raw, max_clock_skew=max_clock_skew))
        except InvalidOrder as exc:
            rejected.append({"index": index, "error": str(exc)})
    if not rejected:
        return orders
    if not batch:
        raise Refused(400, rejected[0]["error"])
    raise Refused(400, f"{len(rejected)} of the {len(messages)} orders are not acceptable; none was taken",
                  rejected=rejected)


async def publish(orders: list[Order]) -> None:
    """Publish ``orders`` and wait until Kafka has acknowledged them all; 503 if it does not.

    The orders go straight to the app's producer, not through ``Topic.send`` (its per-message
    bookkeeping was a third of the request's CPU); its accumulator puts the orders of concurrent
    requests into one produce request per broker.
    """
    topic, producer = orders_topic.get_topic_name(), app.producer
    try:
        deliveries = [await producer.send(topic, kafka_key(o.store_id).encode(), o.dumps(), None, None, None)
                      for o in orders]
        await asyncio.wait_for(asyncio.gather(*deliveries), KAFKA_WAIT_SECONDS)
    except (KafkaError, ProducerSendError, TimeoutError) as exc:
        log.warning("Kafka did not acknowledge %d posted order(s) (%s); the sender is told to retry.",
                    len(orders), exc or type(exc).__name__)
        raise Refused(503, "Kafka did not acknowledge the orders; send the same request again"
                           " (an order already taken is not stored twice)",
                      {"Retry-After": str(RETRY_AFTER_SECONDS)}) from exc


async def take_orders(request: web.Request) -> dict[str, object]:
    """Check, parse and publish the request's orders: the 202's body, or ``Refused`` with the answer."""
    check_token(request.headers.get("Authorization"), settings.orders_api_token, settings.web_host)
    messages, batch = split_batch(await read_body(request))
    orders = parse_all(messages, batch, timedelta(seconds=settings.max_clock_skew_seconds))
    await publish(orders)
    if batch:
        return {"accepted": len(orders), "order_ids": [o.order_id for o in orders]}
    return {"order_id": orders[0].order_id}


@app.page("/api/orders")
class OrdersView(web.View):
    """Points of sale post orders here."""

    async def post(self, request: web.Request) -> web.Response:
        try:
            taken = await take_orders(request)
        except Refused as refused:
            log.warning("Refused a POST /api/orders from %s with %d: %s", request.remote, refused.status,
                        refused.reason)
            return error(self, refused.reason, refused.status, refused.headers, **refused.extra)
        return self.json(taken, status=202, headers=NO_STORE)


@app.page("/api/openapi.json")
async def openapi_document(view: web.View, request: web.Request) -> web.Response:
    """The OpenAPI document of ``POST /api/orders`` and the GET endpoints (also ``docs/openapi.json``)."""
    return view.json(OPENAPI)


OPENAPI = openapi()
