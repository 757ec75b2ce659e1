"""The records that travel through Kafka, and their JSON form."""

from datetime import datetime
from decimal import Decimal

import msgspec

CHANNELS = ("dine_in", "takeaway", "delivery")
PAYMENT_METHODS = ("credit_card", "debit_card", "pix", "cash", "meal_voucher")
SCHEMA_VERSION = 1
"""The version of the order message this code writes; ``SCHEMA_VERSIONS`` are those it reads."""
SCHEMA_VERSIONS = (1,)
DEFAULT_STORE = "main"
"""The store of an order that names none: a restaurant with a single store."""


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order: a dish, its unit price in BRL and how many were ordered."""

    dish: str
    category: str
    unit_price: Decimal
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """A restaurant order; ``order_id`` is its idempotency key, ``created_at`` its event time.

    ``customer_id`` and ``customer_name`` are None for an anonymous order. The message contract
    is ``docs/ORDER_CONTRACT.md``.
    """

    schema_version: int = SCHEMA_VERSION
    order_id: str
    store_id: str = DEFAULT_STORE
    created_at: datetime
    customer_id: int | None = None
    customer_name: str | None = None
    channel: str
    payment_method: str
    items: list[OrderItem]
    total: Decimal

    def dumps(self) -> bytes:
        """The order as the JSON message the generator publishes: amounts as decimal strings."""
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()


def kafka_key(store_id: str) -> str:
    """The Kafka key of an order of ``store_id``: its store, so that Kafka keeps each store's orders
    in one partition, in the order they were sent (docs/ORDER_CONTRACT.md)."""
    return store_id
