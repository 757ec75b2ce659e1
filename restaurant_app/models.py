"""The records that travel through Kafka, and their JSON form."""

from datetime import datetime
from decimal import Decimal

import msgspec

CHANNELS = ("dine_in", "takeaway", "delivery")
PAYMENT_METHODS = ("credit_card", "debit_card", "pix", "cash", "meal_voucher")


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
    """A restaurant order; ``order_id`` is its idempotency key, ``created_at`` its event time."""

    order_id: str
    created_at: datetime
    customer_id: int
    customer_name: str
    channel: str
    payment_method: str
    items: list[OrderItem]
    total: Decimal

    def dumps(self) -> bytes:
        """The order as the JSON message the generator publishes: amounts as decimal strings."""
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()
