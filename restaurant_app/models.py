"""The records that travel through Kafka, and their JSON form."""

from datetime import datetime
from decimal import Decimal

import msgspec

CHANNELS = ("dine_in", "takeaway", "delivery")
PAYMENT_METHODS = ("credit_card", "debit_card", "pix", "cash", "meal_voucher")
SCHEMA_VERSION = 1
"""The version an ``Order`` is unless it says otherwise; ``SCHEMA_VERSIONS`` are those the workers read."""
SCHEMA_VERSIONS = (1, 2)
ZERO = Decimal("0.00")
V2_ORDER_FIELDS = (
    "discount", "service_charge", "service_charge_is_revenue", "delivery_fee", "tip", "payments",
)
"""The order's fields that only version 2 of the message carries (with each line's ``discount``)."""
DEFAULT_STORE = "main"
"""The store of an order that names none: a restaurant with a single store."""


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order: a dish, its unit price in BRL and how many were ordered."""

    dish: str
    category: str
    unit_price: Decimal
    quantity: int
    discount: Decimal = ZERO
    """Taken off this line (version 2); ``net`` is what the line sells for."""

    @property
    def subtotal(self) -> Decimal:
        """The line before its discount: unit price times quantity."""
        return self.unit_price * self.quantity

    @property
    def net(self) -> Decimal:
        return self.subtotal - self.discount


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment of an order (version 2): how, and how much in BRL."""

    method: str
    amount: Decimal


def main_method(payments: tuple[Payment, ...]) -> str:
    """The method that paid the most (the first of equals): a version 2 order's ``payment_method``."""
    return max(payments, key=lambda payment: payment.amount).method


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
    discount: Decimal = ZERO
    service_charge: Decimal = ZERO
    service_charge_is_revenue: bool = False
    delivery_fee: Decimal = ZERO
    tip: Decimal = ZERO
    payments: tuple[Payment, ...] = ()
    """Version 2's payments; empty for version 1, whose ``payment_method`` paid the ``total``."""

    def dumps(self) -> bytes:
        """The order as the JSON message of its version: amounts as decimal strings.

        Version 1 has none of ``V2_ORDER_FIELDS``; version 2 has ``payments`` in place of
        ``payment_method``.
        """
        message = msgspec.to_builtins(self)
        if self.schema_version >= 2:
            del message["payment_method"]
            return _ENCODER.encode(message)
        for name in V2_ORDER_FIELDS:
            del message[name]
        for line in message["items"]:
            del line["discount"]
        return _ENCODER.encode(message)


EVENT_KINDS = ("cancellation", "refund")


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A cancellation of a whole order or a refund of some of it; ``event_id`` is its idempotency key.

    ``amount`` is None for a cancellation that leaves it to the order (what is left of its total);
    ``lines`` are the refunded lines' numbers (1 for the first), empty if not said.
    """

    kind: str
    event_id: str
    order_id: str
    created_at: datetime
    reason: str
    amount: Decimal | None = None
    lines: tuple[int, ...] = ()

    def dumps(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()


def kafka_key(store_id: str) -> str:
    """The Kafka key of an order of ``store_id``: its store, so that Kafka keeps each store's orders
    in one partition, in the order they were sent (docs/ORDER_CONTRACT.md)."""
    return store_id
