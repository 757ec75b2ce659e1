"""The records that travel through Kafka."""

from datetime import datetime
from decimal import Decimal
from typing import List  # noqa: UP035 - Faust reads typing.List, not list[...]

import faust

CHANNELS = ("dine_in", "takeaway", "delivery")
PAYMENT_METHODS = ("credit_card", "debit_card", "pix", "cash", "meal_voucher")


class OrderItem(faust.Record, serializer="json", include_metadata=False, decimals=True):
    """One line of an order: a dish, its unit price in BRL and how many were ordered."""

    dish: str
    category: str
    unit_price: Decimal
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


class Order(
    faust.Record, serializer="json", include_metadata=False, decimals=True, isodates=True
):
    """A restaurant order; ``order_id`` is its idempotency key, ``created_at`` its event time."""

    order_id: str
    created_at: datetime
    customer_id: int
    customer_name: str
    channel: str
    payment_method: str
    items: List[OrderItem]  # noqa: UP006
    total: Decimal
