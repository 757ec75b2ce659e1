"""Turning raw Kafka message bytes into a valid ``Order``, or a clear reason why not.

``parse_order`` is total: any bytes give either an ``Order`` that fits the database
schema or an ``InvalidOrder`` whose reason is short and printable. Nothing else escapes.
It takes the usual message through ``fast_path_order`` (typed decoding in C) and anything
else through ``full_path_order``, which checks each rule in Python and says which one broke.
"""

import functools
import json
import re
import reprlib
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import starmap
from operator import attrgetter
from typing import Annotated, Any, Literal, NoReturn

import msgspec
from msgspec import UNSET, UnsetType

from restaurant_app.errors import PipelineError
from restaurant_app.models import (
    CHANNELS,
    DEFAULT_STORE,
    EVENT_KINDS,
    PAYMENT_METHODS,
    SCHEMA_VERSIONS,
    ZERO,
    Order,
    OrderEvent,
    OrderItem,
    Payment,
    main_method,
)

MAX_MESSAGE_BYTES = 64 * 1024
# A valid order nests 3 deep (order, items, item); JSON decoding recurses once per level.
MAX_NESTING = 32
# Characters of one JSON number: more than any column holds, far less than int() refuses.
MAX_NUMBER_LENGTH = 40
MAX_ITEMS = 100  # line numbers are a smallint
MAX_QUANTITY = 1_000  # quantity is an integer
MAX_UNIT_PRICE = Decimal("100000.00")  # unit_price is numeric(10,2)
MAX_TOTAL = MAX_UNIT_PRICE * MAX_QUANTITY  # total is numeric(12,2)
MAX_PAYMENTS = 10
MAX_CHARGE = MAX_TOTAL  # discounts, service charge, delivery fee, tip and payments: numeric(12,2)
MAX_CUSTOMER_ID = 2**63 - 1  # customer_id is a bigint
MAX_TEXT_LENGTH = 200
MAX_STORE_ID_LENGTH = 32
UNVERSIONED = 1  # a message without schema_version is of the first version, written before the field
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=14)  # no time zone on Earth is further from UTC
DEFAULT_MAX_CLOCK_SKEW = timedelta(seconds=300)
MAX_REASON_LENGTH = 200
EXCERPT_LENGTH = 40
CENT = Decimal("0.01")

# Characters refused in text: they corrupt logs and terminals, reorder the text around
# them (bidi controls are Cf), or cannot be encoded as UTF-8 at all (Cs).
FORBIDDEN_CATEGORIES = {
    "Cc": "control",
    "Cf": "format, such as a bidi control",
    "Cs": "lone surrogate",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
NOT_AN_ORDER_ID = {str(uuid.UUID(int=0)), str(uuid.UUID(int=2**128 - 1))}  # the nil and max UUIDs

# Strings and brackets; a string left open runs to the end, so each character is read once.
JSON_TOKENS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{}]', re.DOTALL)
STORE_ID = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_STORE_ID_LENGTH - 1}}}")
AMOUNT = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?P<offset>Z|[+-][0-9]{2}:[0-5][0-9])?"
)

_excerpts = reprlib.Repr()
_excerpts.maxlevel = 2
_excerpts.maxstring = _excerpts.maxlong = _excerpts.maxother = EXCERPT_LENGTH
_excerpts.maxlist = _excerpts.maxdict = 3


class InvalidOrder(PipelineError, ValueError):
    """The message is not an acceptable order; the text says why, short and printable."""

    def __init__(self, reason: str) -> None:
        super().__init__(_tidy(reason))


def _tidy(reason: str) -> str:
    """``reason`` cut to ``MAX_REASON_LENGTH`` with every unprintable character replaced."""
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[: MAX_REASON_LENGTH - 1] + "…"
    if reason.isprintable():
        return reason
    return "".join(c if c.isprintable() else "?" for c in reason)


def _excerpt(value: Any) -> str:
    """A short, escaped rendering of a bad value for a reason."""
    return _excerpts.repr(value)


def parse_order(
    raw: bytes | None,
    *,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> Order:
    """Decode and check one message; raise ``InvalidOrder`` with the first problem found.

    ``created_at`` may be at most ``max_clock_skew`` later than ``now``, an aware
    datetime that defaults to the current time, and, if ``max_age`` is given, at most
    ``max_age`` earlier.
    """
    now = datetime.now(UTC) if now is None else now
    order = fast_path_order(raw, now, max_clock_skew) or full_path_order(raw, now, max_clock_skew)
    _check_age(order.created_at, now, max_age)
    return order


def _check_age(moment: datetime, now: datetime, max_age: timedelta | None) -> None:
    """Refuse a ``created_at`` more than ``max_age`` before ``now``."""
    if max_age is not None and moment < now - max_age:
        raise InvalidOrder(f"'created_at' {moment.isoformat()} is more than"
                           f" {max_age.total_seconds() / 86400:g} days in the past")


def parse_message(
    raw: bytes | None,
    *,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> Order | OrderEvent:
    """An order, or a cancellation or refund (a message whose ``kind`` says so); ``InvalidOrder`` if neither.

    A message without ``kind`` (or with ``"kind": "order"``) is an order, read by ``parse_order``.
    """
    if not raw or b'"kind"' not in raw:  # no key "kind" (unless escaped: then the order path decides)
        return parse_order(raw, max_clock_skew=max_clock_skew, max_age=max_age, now=now)
    payload = decoded_object(raw)
    kind = payload.get("kind")
    if kind is None or kind == "order":
        return parse_order(raw, max_clock_skew=max_clock_skew, max_age=max_age, now=now)
    if kind not in EVENT_KINDS:
        raise InvalidOrder(f"unknown kind {_excerpt(kind)}; expected order, {', '.join(EVENT_KINDS)}")
    now = datetime.now(UTC) if now is None else now
    event = _event(payload, kind, now, max_clock_skew)
    _check_age(event.created_at, now, max_age)
    return event


def _event(payload: dict[str, Any], kind: str, now: datetime, max_clock_skew: timedelta) -> OrderEvent:
    """A cancellation (its amount optional) or a refund (its amount required, its lines optional)."""
    refund = kind == "refund"
    amount = (_money(payload, "amount", MAX_TOTAL) if refund
              else _optional(payload, "amount", _money, "amount", MAX_TOTAL))
    return OrderEvent(
        kind=kind,
        event_id=_uuid(payload, "event_id"),
        order_id=_uuid(payload),
        created_at=_timestamp(payload, now, max_clock_skew),
        reason=_text(payload, "reason"),
        amount=amount,
        lines=_refunded_lines(payload) if refund else (),
    )


def _refunded_lines(payload: dict[str, Any]) -> tuple[int, ...]:
    """A refund's line numbers (1 is the first line), each once; none if left out."""
    lines = payload.get("lines")
    if lines is None:
        return ()
    if not isinstance(lines, list) or len(lines) > MAX_ITEMS:
        raise InvalidOrder(f"'lines' must be a list of at most {MAX_ITEMS} line numbers")
    for number in lines:
        if type(number) is not int or not 1 <= number <= MAX_ITEMS:
            raise InvalidOrder(f"'lines' must hold line numbers, 1 to {MAX_ITEMS}; got {_excerpt(number)}")
    numbers = tuple(lines)
    if len(set(numbers)) < len(numbers):
        raise InvalidOrder(f"'lines' names a line twice: {_excerpt(list(numbers))}")
    return tuple(sorted(numbers))


def full_path_order(raw: bytes | None, now: datetime, max_clock_skew: timedelta) -> Order:
    """Every rule, checked one by one in Python, with the reason for the first one broken."""
    return _order(decoded_object(raw), now, max_clock_skew)


def decoded_object(raw: bytes | None) -> dict[str, Any]:
    """The message's JSON object, decoded with every limit of an order message, or ``InvalidOrder``."""
    payload = _decode(raw)
    if not isinstance(payload, dict):
        raise InvalidOrder(f"message must be a JSON object, got {type(payload).__name__}")
    return payload


def _decode(raw: bytes | None) -> Any:
    if not raw:
        raise InvalidOrder("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidOrder(f"message is {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    text = _utf8(raw)
    _check_nesting(text)
    try:
        if text.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidOrder(f"message is not valid JSON: {exc}") from None


def _utf8(raw: bytes) -> str:
    # JSON text holds no NUL byte; UTF-16 and UTF-32 text is full of them.
    if b"\x00" in raw:
        raise InvalidOrder("message is not UTF-8 text: it has NUL bytes (UTF-16 or UTF-32?)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidOrder(f"message is not UTF-8 text: bad byte at {exc.start}") from None


def _check_nesting(text: str) -> None:
    """Refuse deep nesting before the recursive JSON decoder meets it."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return  # too few brackets to nest that deep: the usual case, and a cheap one
    depth = 0
    for token in JSON_TOKENS.findall(text):
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidOrder(f"message nests deeper than {MAX_NESTING} levels")
        elif token in ("]", "}"):
            depth -= 1


def _check_number_length(text: str) -> None:
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidOrder(
            f"message has a number of {len(text)} characters, the limit is {MAX_NUMBER_LENGTH}"
        )


def _json_integer(text: str) -> int:
    _check_number_length(text)
    return int(text)


def _json_decimal(text: str) -> Decimal:
    _check_number_length(text)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidOrder(f"message has a number out of range: {text}") from None


def _refuse_constant(name: str) -> NoReturn:
    raise InvalidOrder(f"message has {name}, which is not a number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice: which one counts is ambiguous."""
    result = dict(pairs)
    if len(result) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidOrder(f"message repeats the key {_excerpt(key)}")
            seen.add(key)
    return result


# One decoder for every message: json.loads with these arguments would build one per call.
_DECODER = json.JSONDecoder(
    parse_float=_json_decimal,
    parse_int=_json_integer,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object,
)


def _order(payload: dict[str, Any], now: datetime, max_clock_skew: timedelta) -> Order:
    version = _version(payload)
    items = _field(payload, "items", list, "a list")
    if not items:
        raise InvalidOrder("order has no items")
    if len(items) > MAX_ITEMS:
        raise InvalidOrder(f"order has {len(items)} items, the limit is {MAX_ITEMS}")
    lines = [_item(item, index, version) for index, item in enumerate(items)]
    total = _money(payload, "total", MAX_TOTAL)
    bill = _checked_total(total, lines) if version == 1 else _bill(payload, lines, total)
    return Order(
        schema_version=version,
        order_id=_uuid(payload),
        store_id=_store(payload),
        created_at=_timestamp(payload, now, max_clock_skew),
        customer_id=_optional(payload, "customer_id", _positive_int, "customer_id", MAX_CUSTOMER_ID),
        customer_name=_optional(payload, "customer_name", _text, "customer_name"),
        channel=_choice(payload, "channel", CHANNELS),
        payment_method=(_choice(payload, "payment_method", PAYMENT_METHODS) if version == 1
                        else main_method(bill["payments"])),
        items=lines,
        total=total,
        **bill,
    )


def _bill(payload: dict[str, Any], lines: list[OrderItem], total: Decimal) -> dict[str, Any]:
    """A version 2 order's charges and payments, checked against its ``total``."""
    bill = {name: _optional_money(payload, name) for name in CHARGES}
    bill["service_charge_is_revenue"] = _flag(payload, "service_charge_is_revenue")
    _checked_rule(total, lines, bill)
    return {**bill, **_checked_payments(_payments(payload), total, bill["tip"])}


def _payments(payload: dict[str, Any]) -> tuple[Payment, ...]:
    entries = _field(payload, "payments", list, "a list")
    if not entries:
        raise InvalidOrder("order has no payments")
    if len(entries) > MAX_PAYMENTS:
        raise InvalidOrder(f"order has {len(entries)} payments, the limit is {MAX_PAYMENTS}")
    return tuple(_payment(entry, index) for index, entry in enumerate(entries))


def _payment(entry: Any, index: int) -> Payment:
    if not isinstance(entry, dict):
        raise InvalidOrder(f"payments[{index}] must be an object")
    where = f"payments[{index}]."
    return Payment(method=_choice(entry, "method", PAYMENT_METHODS, where),
                   amount=_money(entry, "amount", MAX_CHARGE, where))


def _flag(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidOrder(f"'{name}' must be true or false, got {_excerpt(value)}")
    return value


def _version(payload: dict[str, Any]) -> int:
    """The message's ``schema_version``: one this code reads, or a rejection that says which it reads."""
    value = payload.get("schema_version")
    if value is None:
        return UNVERSIONED
    return _checked_version(value)


def _checked_version(value: Any) -> int:
    if type(value) is not int or value not in SCHEMA_VERSIONS:
        known = " and ".join(map(str, SCHEMA_VERSIONS))
        raise InvalidOrder(f"unknown schema_version {_excerpt(value)}; this pipeline reads versions {known}")
    return value


def _optional(payload: dict[str, Any], name: str, read: Any, *args: Any) -> Any:
    """``read(payload, *args)`` if the field ``name`` is given; None if it is absent or null."""
    return None if payload.get(name) is None else read(payload, *args)


def _store(payload: dict[str, Any]) -> str:
    value = payload.get("store_id")
    if value is None:
        return DEFAULT_STORE
    if not isinstance(value, str):
        raise InvalidOrder(f"'store_id' must be text, got {_excerpt(value)}")
    return _checked_store(value)


@functools.lru_cache(maxsize=1024)
def _checked_store(value: str) -> str:
    """``value`` if it is a store id; remembered, as a chain's few stores come again and again."""
    if not STORE_ID.fullmatch(value):
        raise InvalidOrder(
            f"'store_id' must be 1 to {MAX_STORE_ID_LENGTH} lowercase letters, digits, '-' or '_',"
            f" starting with a letter or digit; got {_excerpt(value)}"
        )
    return value


_SUBTOTAL, _NET, _AMOUNT = attrgetter("subtotal"), attrgetter("net"), attrgetter("amount")
"""What ``sum`` reads of each line or payment, in C."""


def _checked_total(total: Decimal, lines: list[OrderItem]) -> dict[str, Any]:
    """Version 1's rule: the total is the sum of the items. A v1 order has no charges (``{}``)."""
    expected = sum(map(_SUBTOTAL, lines), Decimal(0))
    if total != expected:
        raise InvalidOrder(f"total {total} does not equal the sum of the items {expected}")
    return {}


CHARGES = ("discount", "service_charge", "delivery_fee", "tip")
"""Version 2's amounts of the whole order, each 0 when left out."""


def _checked_rule(total: Decimal, lines: list[OrderItem], bill: dict[str, Any]) -> None:
    """Version 2's rule: total = lines after their discounts - discount + service charge + delivery fee."""
    net = sum(map(_NET, lines), ZERO)
    discount, service, delivery = bill["discount"], bill["service_charge"], bill["delivery_fee"]
    if discount > net:
        raise InvalidOrder(f"'discount' {discount} is more than the lines' {net} after their discounts")
    expected = net - discount + service + delivery
    if total != expected:
        raise InvalidOrder(f"total {total} does not equal lines {net} - discount {discount}"
                           f" + service charge {service} + delivery fee {delivery} = {expected}")


def _checked_payments(payments: tuple[Payment, ...], total: Decimal, tip: Decimal) -> dict[str, Any]:
    """Version 2's rule: the payments add up to the total plus the tip."""
    paid = sum(map(_AMOUNT, payments), ZERO)
    if paid != total + tip:
        raise InvalidOrder(f"payments add up to {paid}, not total {total} + tip {tip} = {total + tip}")
    return {"payments": payments}


def _item(item: Any, index: int, version: int) -> OrderItem:
    if not isinstance(item, dict):
        raise InvalidOrder(f"items[{index}] must be an object")
    where = f"items[{index}]."
    line = OrderItem(
        dish=_text(item, "dish", where),
        category=_text(item, "category", where),
        unit_price=_money(item, "unit_price", MAX_UNIT_PRICE, where),
        quantity=_positive_int(item, "quantity", MAX_QUANTITY, where),
    )
    if version == 1:
        return line
    return _discounted(line, _optional_money(item, "discount", where), f"{where}discount")


def _discounted(line: OrderItem, discount: Decimal, label: str) -> OrderItem:
    """``line`` with its ``discount``, which may be at most the line's subtotal."""
    if discount > line.subtotal:
        raise InvalidOrder(f"'{label}' {discount} is more than the line's {line.subtotal}")
    return OrderItem(dish=line.dish, category=line.category, unit_price=line.unit_price,
                     quantity=line.quantity, discount=discount)


def _field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], described: str,
           where: str = "") -> Any:
    value = payload.get(name)
    if value is None:
        raise InvalidOrder(f"missing field '{where}{name}'")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidOrder(f"'{where}{name}' must be {described}, got {_excerpt(value)}")
    return value


def _text(payload: dict[str, Any], name: str, where: str = "") -> str:
    return _checked_text(_field(payload, name, str, "text", where), f"{where}{name}")


def _checked_text(value: str, label: str) -> str:
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidOrder(f"'{label}' is longer than {MAX_TEXT_LENGTH} characters")
    _check_characters(value, label)
    value = value.strip()
    if not value:
        raise InvalidOrder(f"'{label}' is empty")
    return value


def _check_characters(value: str, label: str) -> None:
    """Refuse the characters of ``FORBIDDEN_CATEGORIES``; printable text has none."""
    if value.isprintable():
        return
    for char in value:
        kind = FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
        if kind:
            code = "NUL" if char == "\x00" else f"U+{ord(char):04X}"
            raise InvalidOrder(f"'{label}' contains a {code} character ({kind})")


def _positive_int(payload: dict[str, Any], name: str, limit: int, where: str = "") -> int:
    value = _field(payload, name, int, "an integer", where)
    if value <= 0:
        raise InvalidOrder(f"'{where}{name}' must be positive, got {value}")
    if value > limit:
        raise InvalidOrder(f"'{where}{name}' {value} is over the limit of {limit}")
    return value


def _money(payload: dict[str, Any], name: str, limit: Decimal, where: str = "") -> Decimal:
    value = _field(payload, name, (int, Decimal, str), "an amount in BRL", where)
    return _checked_money(value, f"{where}{name}", limit)


def _optional_money(payload: dict[str, Any], name: str, where: str = "") -> Decimal:
    """An amount that may be 0, and is when left out or null (version 2's discounts and charges)."""
    if payload.get(name) is None:
        return ZERO
    value = _field(payload, name, (int, Decimal, str), "an amount in BRL", where)
    return _checked_money(value, f"{where}{name}", MAX_CHARGE, zero=True)


def _checked_money(value: int | Decimal | str, label: str, limit: Decimal, zero: bool = False) -> Decimal:
    """``value`` in cents: more than 0 (with ``zero``, 0 or more), at most ``limit``, 2 places at most."""
    amount = _amount(value, label)
    if amount < 0 or (amount == 0 and not zero):
        raise InvalidOrder(f"'{label}' must be {'0 or more' if zero else 'positive'}, got {amount}")
    if amount > limit:
        raise InvalidOrder(f"'{label}' {amount} is over the limit of {limit}")
    # Only now is quantize safe: a huge amount would overflow the decimal context.
    cents = amount.quantize(CENT)
    if amount != cents:
        raise InvalidOrder(f"'{label}' has more than 2 decimal places: {amount}")
    return cents


_checked_text_money = functools.lru_cache(maxsize=4096)(_checked_money)
"""``_checked_money`` of an amount written as text, remembered: a total or a payment of a common basket
comes again and again.
Only text: equal numbers of other types (``1`` and ``Decimal("1.00")``) would share an entry."""


def _amount(value: int | Decimal | str, label: str) -> Decimal:
    """A JSON number as it is, or a string of ASCII digits with at most 2 decimals."""
    if isinstance(value, str) and not AMOUNT.fullmatch(value):
        raise InvalidOrder(f"'{label}' must be an amount in BRL such as 12.50, got {_excerpt(value)}")
    return Decimal(value)


def _choice(payload: dict[str, Any], name: str, allowed: tuple[str, ...], where: str = "") -> str:
    value = _field(payload, name, str, "text", where)
    if value not in allowed:
        raise InvalidOrder(f"unknown {where}{name} {_excerpt(value)}; expected one of {', '.join(allowed)}")
    return value


def _uuid(payload: dict[str, Any], name: str = "order_id") -> str:
    return _checked_uuid(_field(payload, name, str, "a UUID"), name)


def _checked_uuid(value: str, name: str = "order_id") -> str:
    if not UUID_TEXT.fullmatch(value):
        raise InvalidOrder(f"'{name}' must be a UUID in its 36-character form, got {_excerpt(value)}")
    order_id = value.lower()  # what str(uuid.UUID(value)) gives for this form, without the object
    if order_id in NOT_AN_ORDER_ID:
        raise InvalidOrder(f"'{name}' {value} is the nil or max UUID, not an {name.removesuffix('_id')}'s")
    return order_id


def _timestamp(payload: dict[str, Any], now: datetime, max_clock_skew: timedelta) -> datetime:
    return _checked_moment(_field(payload, "created_at", str, "an ISO 8601 timestamp"), now, max_clock_skew)


def _checked_moment(value: str, now: datetime, max_clock_skew: timedelta) -> datetime:
    """``created_at`` in UTC, if it is an ISO 8601 timestamp with an offset and a likely time."""
    moment = _iso_timestamp(value)
    offset = moment.utcoffset()
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        raise InvalidOrder(f"'created_at' {value} is more than {MAX_UTC_OFFSET} from UTC")
    if moment < EARLIEST_ORDER:
        raise InvalidOrder(f"'created_at' {value} is before {EARLIEST_ORDER:%Y-%m-%d}")
    if moment - now > max_clock_skew:
        raise InvalidOrder(
            f"'created_at' {value} is more than {max_clock_skew.total_seconds():g} s in the future"
        )
    return moment.astimezone(UTC)


def _iso_timestamp(value: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SS[.fraction]`` and an offset (``Z`` or ``±HH:MM``), in ASCII digits."""
    match = TIMESTAMP.fullmatch(value)
    if not match:
        raise InvalidOrder(f"'created_at' must be an ISO 8601 timestamp, got {_excerpt(value)}")
    if not match["offset"]:
        raise InvalidOrder(f"'created_at' must include a time zone, got {_excerpt(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidOrder(f"'created_at' {value} is not a real date and time") from None


# The fast path: the usual message, decoded and typed in C, then given the same value checks.
# About 3 times cheaper than the full path (bench/RESULTS.md).


class _TypedItem(msgspec.Struct, forbid_unknown_fields=True):
    dish: str
    category: str
    unit_price: str
    quantity: Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
    discount: str | UnsetType | None = UNSET


class _TypedPayment(msgspec.Struct, forbid_unknown_fields=True):
    method: Literal[PAYMENT_METHODS]
    amount: str


_TypedPayments = Annotated[list[_TypedPayment], msgspec.Meta(min_length=1, max_length=MAX_PAYMENTS)]


class _TypedOrder(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    schema_version: Literal[SCHEMA_VERSIONS] | UnsetType | None = UNSET
    order_id: str
    store_id: str | UnsetType | None = UNSET
    created_at: str
    customer_id: Annotated[int, msgspec.Meta(gt=0, le=MAX_CUSTOMER_ID)] | UnsetType | None = UNSET
    customer_name: str | UnsetType | None = UNSET
    channel: Literal[CHANNELS]
    payment_method: Literal[PAYMENT_METHODS] | UnsetType = UNSET
    items: Annotated[list[_TypedItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    total: str
    discount: str | UnsetType | None = UNSET
    service_charge: str | UnsetType | None = UNSET
    service_charge_is_revenue: bool | UnsetType | None = UNSET
    delivery_fee: str | UnsetType | None = UNSET
    tip: str | UnsetType | None = UNSET
    payments: _TypedPayments | UnsetType = UNSET


def _strings_per_object(struct: type[msgspec.Struct]) -> int:
    """How many JSON strings an object of ``struct`` always has: each required key, and its text value."""
    text = (msgspec.inspect.StrType, msgspec.inspect.LiteralType)
    fields = msgspec.inspect.type_info(struct).fields
    return sum(1 + isinstance(field.type, text) for field in fields if field.required)


def _optional_names(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """The names of a ``struct``'s optional fields."""
    return tuple(f.name for f in msgspec.inspect.type_info(struct).fields if not f.required)


def _optional_strings(values: Sequence[Any]) -> int:
    """How many JSON strings the optional fields given hold: each key, and its value if text."""
    return len(values) - values.count(UNSET) + list(map(type, values)).count(str)


def _strings(typed: _TypedOrder) -> int:
    """How many JSON strings the message of ``typed`` has if no key is given twice."""
    items = typed.items
    payments = 0 if typed.payments is UNSET else _PAYMENT_STRINGS * len(typed.payments)
    optional = (*_OPTIONAL_FIELDS(typed), *map(_OPTIONAL_LINE_FIELD, items))
    return _ORDER_STRINGS + _LINE_STRINGS * len(items) + payments + _optional_strings(optional)


_TYPED_DECODER = msgspec.json.Decoder(_TypedOrder)
_QUOTE_OR_BACKSLASH_ESCAPED = re.compile(rb'\\["\\]')
"""An escape after which a quote may not open or close a string: the fast path counts quotes."""
_ORDER_STRINGS = _strings_per_object(_TypedOrder)
_LINE_STRINGS = _strings_per_object(_TypedItem)
_PAYMENT_STRINGS = _strings_per_object(_TypedPayment)
_OPTIONAL_FIELDS = attrgetter(*_optional_names(_TypedOrder))
(_OPTIONAL_LINE_NAME,) = _optional_names(_TypedItem)  # a line's one optional field, its discount
_OPTIONAL_LINE_FIELD = attrgetter(_OPTIONAL_LINE_NAME)


def fast_path_order(raw: bytes | None, now: datetime, max_clock_skew: timedelta) -> Order | None:
    """The order in ``raw`` if it has the usual form, else ``None``: ``full_path_order`` then decides.

    The usual form is what the generator publishes: an order's fields of its version and no
    others, each of its JSON type, amounts as strings, and no escaped quote or backslash
    (``\\u00e3`` and the like are fine: producers that write ASCII-only JSON escape every accent).
    msgspec decodes and types it in C; its values then pass the same checks as in the full path.
    So an order this accepts is the ``Order`` the full path would give, and anything else is left
    to the full path and its reasons, which msgspec's errors do not match. The property tests
    compare the two paths.
    """
    if not raw or len(raw) > MAX_MESSAGE_BYTES:
        return None
    if b"\\" in raw and _QUOTE_OR_BACKSLASH_ESCAPED.search(raw):
        return None
    try:
        typed = _TYPED_DECODER.decode(raw)
    except msgspec.DecodeError:  # msgspec.ValidationError is one too
        return None
    # With no escaped quote or backslash, each quote opens or closes a string. More strings than
    # the order's keys and text values means a key given twice: msgspec keeps the last, the full
    # path refuses it.
    if raw.count(b'"') != 2 * _strings(typed):
        return None
    try:
        return _checked_order(typed, now, max_clock_skew)
    except InvalidOrder:
        return None


def _checked_order(typed: _TypedOrder, now: datetime, max_clock_skew: timedelta) -> Order:
    version = _given(typed.schema_version, UNVERSIONED)
    lines = list(starmap(_checked_line, map(_LINE_FIELDS[version], typed.items)))
    total = _checked_text_money(typed.total, "total", MAX_TOTAL)
    bill = _checked_total(total, lines) if version == 1 else _checked_bill(typed, lines, total)
    payment_method = typed.payment_method if version == 1 else main_method(bill["payments"])
    if payment_method is UNSET:
        raise InvalidOrder("no payment_method")  # the full path says it in its own words
    return Order(
        schema_version=version,
        order_id=_checked_uuid(typed.order_id),
        store_id=_checked_store(_given(typed.store_id, DEFAULT_STORE)),
        created_at=_checked_moment(typed.created_at, now, max_clock_skew),
        customer_id=_given(typed.customer_id),
        customer_name=_maybe_text(_given(typed.customer_name), "customer_name"),
        channel=typed.channel,
        payment_method=payment_method,
        items=lines,
        total=total,
        **bill,
    )


@functools.lru_cache(maxsize=4096)
def _checked_line(dish: str, category: str, unit_price: str, quantity: int,
                  discount: str | UnsetType | None = None) -> OrderItem:
    """A typed line's fields as its ``OrderItem``, remembered: a menu's lines come again and again."""
    line = OrderItem(dish=_checked_text(dish, "dish"), category=_checked_text(category, "category"),
                     unit_price=_checked_money(unit_price, "unit_price", MAX_UNIT_PRICE), quantity=quantity)
    discount = _given(discount)
    if discount is None:
        return line
    return _discounted(line, _checked_money(discount, "discount", MAX_CHARGE, zero=True), "discount")


_LINE_FIELDS = {
    1: attrgetter("dish", "category", "unit_price", "quantity"),  # a discount is no field of version 1:
    2: attrgetter("dish", "category", "unit_price", "quantity", "discount"),  # ignored, as by the full path
}
"""What reads a typed line's fields as ``_checked_line``'s arguments, by the order's version."""


def _checked_bill(typed: _TypedOrder, lines: list[OrderItem], total: Decimal) -> dict[str, Any]:
    """As ``_bill``, for the typed message (a ``payment_method`` is no field of version 2: ignored)."""
    if typed.payments is UNSET:
        raise InvalidOrder("missing field 'payments'")
    bill = dict(zip(CHARGES, map(_given_money, _CHARGE_FIELDS(typed), CHARGES), strict=True))
    bill["service_charge_is_revenue"] = _given(typed.service_charge_is_revenue, False)
    _checked_rule(total, lines, bill)
    payments = tuple(Payment(method=p.method, amount=_checked_text_money(p.amount, "amount", MAX_CHARGE))
                     for p in typed.payments)
    return {**bill, **_checked_payments(payments, total, bill["tip"])}


_CHARGE_FIELDS = attrgetter(*CHARGES)
"""What reads a typed order's ``CHARGES`` as one tuple, in C."""


@functools.lru_cache(maxsize=4096)
def _given_money(value: str | UnsetType | None, label: str) -> Decimal:
    """A typed amount of ``CHARGES``; 0 if absent or null. Remembered: the same few come again and again."""
    value = _given(value)
    return ZERO if value is None else _checked_money(value, label, MAX_CHARGE, zero=True)


def _given(value: Any, default: Any = None) -> Any:
    """A typed optional field's value; ``default`` if it was absent or null."""
    return default if value is None or value is UNSET else value


def _maybe_text(value: str | None, label: str) -> str | None:
    return None if value is None else _checked_text(value, label)
