"""Turning raw Kafka message bytes into a valid ``Order``, or a clear reason why not."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from restaurant_app.models import CHANNELS, PAYMENT_METHODS, Order, OrderItem

MAX_MESSAGE_BYTES = 64 * 1024
MAX_ITEMS = 100
MAX_QUANTITY = 1_000
MAX_UNIT_PRICE = Decimal("100000.00")
MAX_TOTAL = MAX_UNIT_PRICE * MAX_QUANTITY
MAX_TEXT_LENGTH = 200
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)


class InvalidOrder(ValueError):
    """The message is not an acceptable order; the text says why."""


def parse_order(raw: bytes | None) -> Order:
    """Decode and check one message; raise ``InvalidOrder`` with the first problem found."""
    if not raw:
        raise InvalidOrder("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidOrder(f"message is {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        payload = json.loads(raw, parse_float=Decimal)
    except UnicodeDecodeError:
        raise InvalidOrder("message is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidOrder(f"message is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidOrder(f"message must be a JSON object, got {type(payload).__name__}")
    return _order(payload)


def _order(payload: dict[str, Any]) -> Order:
    items = _field(payload, "items", list, "a list")
    if not items:
        raise InvalidOrder("order has no items")
    if len(items) > MAX_ITEMS:
        raise InvalidOrder(f"order has {len(items)} items, the limit is {MAX_ITEMS}")
    lines = [_item(item, index) for index, item in enumerate(items)]
    total = _money(payload, "total", MAX_TOTAL)
    expected = sum((line.subtotal for line in lines), Decimal(0))
    if total != expected:
        raise InvalidOrder(f"total {total} does not equal the sum of the items {expected}")
    return Order(
        order_id=_uuid(payload),
        created_at=_timestamp(payload),
        customer_id=_positive_int(payload, "customer_id"),
        customer_name=_text(payload, "customer_name"),
        channel=_choice(payload, "channel", CHANNELS),
        payment_method=_choice(payload, "payment_method", PAYMENT_METHODS),
        items=lines,
        total=total,
    )


def _item(item: Any, index: int) -> OrderItem:
    if not isinstance(item, dict):
        raise InvalidOrder(f"items[{index}] must be an object")
    quantity = _positive_int(item, "quantity", where=f"items[{index}].")
    if quantity > MAX_QUANTITY:
        raise InvalidOrder(f"items[{index}].quantity {quantity} is over the limit of {MAX_QUANTITY}")
    return OrderItem(
        dish=_text(item, "dish", where=f"items[{index}]."),
        category=_text(item, "category", where=f"items[{index}]."),
        unit_price=_money(item, "unit_price", MAX_UNIT_PRICE, where=f"items[{index}]."),
        quantity=quantity,
    )


def _field(payload: dict[str, Any], name: str, kind: type, described: str, where: str = "") -> Any:
    if name not in payload or payload[name] is None:
        raise InvalidOrder(f"missing field '{where}{name}'")
    value = payload[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidOrder(f"'{where}{name}' must be {described}, got {value!r:.60}")
    return value


def _text(payload: dict[str, Any], name: str, where: str = "") -> str:
    value = _field(payload, name, str, "text", where).strip()
    if not value:
        raise InvalidOrder(f"'{where}{name}' is empty")
    if "\x00" in value:
        raise InvalidOrder(f"'{where}{name}' contains a NUL character")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidOrder(f"'{where}{name}' is longer than {MAX_TEXT_LENGTH} characters")
    return value


def _positive_int(payload: dict[str, Any], name: str, where: str = "") -> int:
    value = _field(payload, name, int, "an integer", where)
    if value <= 0:
        raise InvalidOrder(f"'{where}{name}' must be positive, got {value}")
    if value >= 2**63:
        raise InvalidOrder(f"'{where}{name}' is too large")
    return value


def _money(payload: dict[str, Any], name: str, limit: Decimal, where: str = "") -> Decimal:
    value = _field(payload, name, (int, Decimal, str), "an amount in BRL", where)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidOrder(f"'{where}{name}' must be an amount in BRL, got {value!r:.60}") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidOrder(f"'{where}{name}' must be positive, got {value}")
    if amount != amount.quantize(Decimal("0.01")):
        raise InvalidOrder(f"'{where}{name}' has more than 2 decimal places: {value}")
    if amount > limit:
        raise InvalidOrder(f"'{where}{name}' {value} is over the limit of {limit}")
    return amount.quantize(Decimal("0.01"))


def _choice(payload: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = _field(payload, name, str, "text")
    if value not in allowed:
        raise InvalidOrder(f"unknown {name} {value!r:.60}; expected one of {', '.join(allowed)}")
    return value


def _uuid(payload: dict[str, Any]) -> str:
    value = _field(payload, "order_id", str, "a UUID")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidOrder(f"'order_id' must be a UUID, got {value!r:.60}") from None


def _timestamp(payload: dict[str, Any]) -> datetime:
    value = _field(payload, "created_at", str, "an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidOrder(f"'created_at' must be an ISO 8601 timestamp, got {value!r:.60}") from None
    if moment.tzinfo is None:
        raise InvalidOrder(f"'created_at' must include a time zone, got {value!r:.60}")
    if moment < EARLIEST_ORDER:
        raise InvalidOrder(f"'created_at' {value} is before {EARLIEST_ORDER:%Y-%m-%d}")
    if moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise InvalidOrder(f"'created_at' {value} is more than a day in the future")
    return moment
