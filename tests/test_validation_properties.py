"""Properties of ``parse_order``: any bytes give an order that fits the schema, or a short reason.

Every example also runs through both paths: the fast path accepts only what the full path
accepts, as the same ``Order``, and leaves everything else to the full path and its reasons.

The schema check here is written from ``migrations/001_orders.sql`` and ``020_order_contract_v2.sql``,
not from the validation code, so a limit that drifts from its column shows up as a failure. Version 2
orders (discounts, charges, tip, payments) are drawn with amounts that keep the contract's rule or
break it by a cent or more, and the rule is checked here in its own words.
"""

import asyncio
import json
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from restaurant_app.database import Database
from restaurant_app.models import CHANNELS, PAYMENT_METHODS, Order, OrderItem
from restaurant_app.order_sink import Accepted, PostgresOrderSink, Source
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import InvalidOrder, fast_path_order, full_path_order, parse_order

NOW = datetime.now(UTC)  # one "now" for every example, so that a failure replays the same way
SKEW = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
SMALLINT_MAX, INTEGER_MAX, BIGINT_MAX = 2**15 - 1, 2**31 - 1, 2**63 - 1
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs"}  # NUL is a Cc
REASON_LIMIT = 200
GENERATED = [OrderGenerator(seed).order(NOW - timedelta(minutes=seed)).dumps() for seed in range(8)]


def without(raw: bytes, *names: str, **changes: Any) -> bytes:
    """``raw`` without the fields ``names`` and with ``changes``, written as a producer might."""
    payload = {key: value for key, value in json.loads(raw).items() if key not in names}
    return json.dumps({**payload, **changes}, ensure_ascii=False).encode()


# Every form version 1 allows: as the generator writes it, written before the optional fields
# existed, anonymous (fields left out or null), and from another store of a chain.
VALID_MESSAGES = [
    *GENERATED[:4],
    without(GENERATED[4], "schema_version", "store_id"),
    without(GENERATED[5], "customer_id", "customer_name"),
    without(GENERATED[6], customer_id=None, customer_name=None, schema_version=None, store_id=None),
    without(GENERATED[7], "customer_name", store_id="loja-07"),
]
FAST = settings(max_examples=300, deadline=None)


# --- What every outcome must satisfy --------------------------------------------------


def outcome(raw: bytes) -> Order | None:
    """Parse ``raw`` and check the result: the order if accepted, None if rejected."""
    fast = fast_path_order(raw, NOW, SKEW)
    event("fast path" if fast else "full path")
    try:
        order = parse_order(raw, max_clock_skew=SKEW, now=NOW)
    except InvalidOrder as rejection:
        assert fast is None, "the fast path accepted what parse_order rejects"
        assert_short_and_printable(str(rejection))
        assert_full_path_gives(raw, rejection)
        event("rejected")
        return None
    assert_fits_schema(order)
    assert_full_path_gives(raw, order)
    event("accepted")
    return order


def assert_full_path_gives(raw: bytes, expected: Order | InvalidOrder) -> None:
    """The full path alone gives ``expected``: the same order, or a rejection for the same reason."""
    try:
        full: Order | str = full_path_order(raw, NOW, SKEW)
    except InvalidOrder as rejection:
        full = str(rejection)
    assert full == (str(expected) if isinstance(expected, InvalidOrder) else expected)


def assert_short_and_printable(reason: str) -> None:
    assert 0 < len(reason) <= REASON_LIMIT, reason
    assert reason.isprintable(), reason


def assert_fits_schema(order: Order) -> None:
    """The row and its lines would go into the tables of ``001_orders.sql`` as they are."""
    assert str(uuid.UUID(order.order_id)) == order.order_id
    assert uuid.UUID(order.order_id).int != 0
    assert_likely_time(order.created_at)
    assert order.schema_version in (1, 2)
    if order.customer_id is not None:
        assert_integer(order.customer_id, BIGINT_MAX)
    named = (order.customer_name,) if order.customer_name is not None else ()
    for text in (*named, order.store_id, order.channel, order.payment_method):
        assert_storable_text(text)
    assert len(order.store_id) <= 32 and order.store_id.isascii()
    assert order.channel in CHANNELS
    assert order.payment_method in PAYMENT_METHODS
    assert 1 <= len(order.items) <= SMALLINT_MAX
    for item in order.items:
        assert_fits_line(item)
    assert_numeric(order.total, precision=12, scale=2)
    if order.schema_version == 1:
        assert order.total == sum(item.unit_price * item.quantity for item in order.items)
        assert not order.payments and order.discount == order.tip == 0
    else:
        assert_keeps_the_v2_rule(order)


def assert_keeps_the_v2_rule(order: Order) -> None:
    """total = lines less their discounts - discount + service charge + delivery fee; paid = total + tip."""
    lines = sum(item.unit_price * item.quantity - item.discount for item in order.items)
    for amount in (order.discount, order.service_charge, order.delivery_fee, order.tip):
        assert_numeric(amount, precision=12, scale=2, zero=True)
    assert order.discount <= lines
    assert order.total == lines - order.discount + order.service_charge + order.delivery_fee
    assert 1 <= len(order.payments) <= 10
    for payment in order.payments:
        assert payment.method in PAYMENT_METHODS
        assert_numeric(payment.amount, precision=12, scale=2)
    assert sum(payment.amount for payment in order.payments) == order.total + order.tip
    assert order.payment_method == max(order.payments, key=lambda payment: payment.amount).method


def assert_fits_line(item: OrderItem) -> None:
    assert_storable_text(item.dish)
    assert_storable_text(item.category)
    assert_numeric(item.unit_price, precision=10, scale=2)
    assert_integer(item.quantity, INTEGER_MAX)
    assert_numeric(item.discount, precision=12, scale=2, zero=True)
    assert item.discount <= item.unit_price * item.quantity


def assert_likely_time(moment: datetime) -> None:
    """An instant PostgreSQL stores as it is, from 2000 to a little after now."""
    offset = moment.utcoffset()
    assert offset is not None and abs(offset) < timedelta(hours=16)
    assert EARLIEST <= moment <= NOW + SKEW


def assert_integer(value: int, maximum: int) -> None:
    assert type(value) is int
    assert 0 < value <= maximum


def assert_numeric(value: Decimal, precision: int, scale: int, zero: bool = False) -> None:
    """``value`` is positive (or 0, with ``zero``) and fits ``numeric(precision, scale)`` without rounding."""
    assert isinstance(value, Decimal) and value.is_finite()
    assert (value >= 0 if zero else value > 0) and value < Decimal(10) ** (precision - scale)
    assert value == value.quantize(Decimal(1).scaleb(-scale))


def assert_storable_text(text: str) -> None:
    assert isinstance(text, str) and text and text == text.strip()
    text.encode("utf-8")  # a lone surrogate would raise here, as it would in COPY
    assert not any(unicodedata.category(char) in REFUSED_CATEGORIES for char in text), ascii(text)


# --- Building messages: objects keep their key order and may repeat a key ---------------


class Raw(str):
    """JSON text to put in a message as it is."""


class Pairs(list):
    """A JSON object as its (key, value) pairs, so that a key can appear twice."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(key, ensure_ascii=False)}: {to_json(item)}"
                               for key, item in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def set_pair(pairs: Pairs, key: str, value: Any) -> None:
    """Give ``key`` the ``value``, adding the key if it is not there."""
    for index, (name, _) in enumerate(pairs):
        if name == key:
            pairs[index] = (key, value)
            return
    pairs.append((key, value))


def as_json(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Raw]:
    return strategy.map(lambda value: Raw(json.dumps(value)))


def json_string(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Raw]:
    """Strings written with non-ASCII escaped or, as often, as raw UTF-8."""
    return st.builds(lambda text, ascii_only: Raw(json.dumps(text, ensure_ascii=ascii_only)),
                     strategy, st.booleans())


# --- Values for one field ------------------------------------------------------------

NON_ASCII_DIGITS = ["\u0660", "\u0661", "\u06f1", "\u0966", "\uff11", "\U0001d7d9", "\u00b2"]
ODD_CHARACTERS = [
    "\x00", "\x07", "\x1b[31m", "\r\n", "\n", "\t", "\x7f", "\x85", "\u2028", "\u2029",
    "\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u00a0", "\u3000", "\U0001f355",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0010ffff", "\ufffe", "e\u0301", "\ue000",
]

NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.sampled_from([0, -1, 1, SMALLINT_MAX + 1, INTEGER_MAX, INTEGER_MAX + 1, BIGINT_MAX,
                     BIGINT_MAX + 1, 10**26, 10**30]).map(str),
    st.text("0123456789", min_size=1, max_size=50),  # leading zeros too
    st.integers(4_290, 5_000).map(lambda digits: "9" * digits),  # int() refuses over 4,300
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e26", "1e30", "-0", "-0.0", "1.005", "0.001",
                     "100000.00", "100000.01", "99999999.99", "100000000.00", "1e999999999999999999999"]),
).map(Raw)

AMOUNT_STRINGS = json_string(st.one_of(
    st.text(st.sampled_from([*"0123456789._ -+eE\t\n", *NON_ASCII_DIGITS, "\u00a0"]), max_size=16),
    st.decimals(min_value=0, max_value=10**12, places=2).map(str),
    st.decimals(min_value=0, max_value=10**6, places=3).map(str),
))

TEXTS = json_string(st.one_of(
    st.text(),
    st.lists(st.one_of(st.text(max_size=4), st.sampled_from(ODD_CHARACTERS))).map("".join),
    st.text(min_size=190, max_size=400),
    st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs", "Co"]), max_size=8),
))


@st.composite
def lone_surrogates(draw: st.DrawFn) -> Raw:
    """A string with one or two ``\\uD800``-``\\uDFFF`` escapes, which JSON allows."""
    before, after = draw(st.text(max_size=4)), draw(st.text(max_size=4))
    codes = draw(st.lists(st.integers(0xD800, 0xDFFF), min_size=1, max_size=2))
    escapes = "".join(f"\\u{code:04x}" for code in codes)
    return Raw(json.dumps(before)[:-1] + escapes + json.dumps(after)[1:])


@st.composite
def near_now(draw: st.DrawFn) -> str:
    """An instant around now in the format producers use, with any offset below a day."""
    ahead = draw(st.one_of(st.timedeltas(-timedelta(days=2), timedelta(days=2)),
                           st.timedeltas(SKEW, timedelta(days=2)),
                           st.timedeltas(SKEW - timedelta(seconds=2), SKEW + timedelta(seconds=2))))
    offset = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    return (NOW + ahead).astimezone(timezone(timedelta(minutes=offset))).isoformat()


@st.composite
def any_time(draw: st.DrawFn) -> str:
    """Any date and time, written with or without a fraction and with odd offsets."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    fraction = draw(st.sampled_from(["", ".1", ".123", ".123456", ".123456789", ".1234567890"]))
    offset = draw(st.one_of(
        st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+14:00", "-14:01", "+15:59", "+16:00",
                         "+24:00", "+0300", "+03"]),
        st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 99), st.integers(0, 99)),
    ))
    separator = draw(st.sampled_from(["T", " ", "t", "x"]))
    return moment.isoformat(sep=separator, timespec="seconds") + fraction + offset


def in_other_digits(text: str) -> str:
    return text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


TIMESTAMPS = json_string(st.one_of(
    near_now(), near_now(), any_time(), near_now().map(in_other_digits), st.text(max_size=40),
))

UUIDS = json_string(st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: u.urn),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: in_other_digits(str(u))),
    st.uuids().map(lambda u: str(u).replace("-", "_", 1)),
    st.sampled_from([str(uuid.UUID(int=0)), str(uuid.UUID(int=2**128 - 1))]),
))

WRONG_TYPES = st.sampled_from(
    ["null", "true", "false", "[]", "{}", '""', "0", '"x"', "[1]", '{"a": 1}']
).map(Raw)


@st.composite
def deep_nesting(draw: st.DrawFn) -> Raw:
    """Arrays or objects nested around the limit or far beyond it, closed or not."""
    depth = draw(st.one_of(st.integers(28, 36), st.integers(1, 3_000), st.integers(900, 5_000)))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    inner = "1" if opener.startswith("{") else ""
    closed = draw(st.booleans())
    return Raw(opener * depth + inner + (closer * depth if closed else ""))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)

ANY_VALUE = st.one_of(WRONG_TYPES, deep_nesting(), NUMBERS, TEXTS, lone_surrogates(), as_json(JSON_VALUES))

ORDER_KEYS = ("schema_version", "order_id", "store_id", "created_at", "customer_id", "customer_name",
              "channel", "payment_method", "items", "total")
STORE_IDS = json_string(st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True),
    st.text(st.sampled_from([*"abcXYZ019_- .", "\u00e7"]), max_size=40),
))
FIELD_VALUES = {
    "schema_version": NUMBERS | as_json(st.sampled_from([1, 2, 0, None, "1", True])),
    "order_id": UUIDS,
    "store_id": STORE_IDS | as_json(st.none()),
    "created_at": TIMESTAMPS,
    "customer_id": NUMBERS | as_json(st.none()),
    "customer_name": TEXTS | lone_surrogates() | as_json(st.none()),
    "channel": TEXTS | as_json(st.sampled_from(CHANNELS)),
    "payment_method": TEXTS | as_json(st.sampled_from(PAYMENT_METHODS)),
    "items": deep_nesting(),
    "total": NUMBERS | AMOUNT_STRINGS,
    "dish": TEXTS | lone_surrogates(),
    "category": TEXTS | lone_surrogates(),
    "unit_price": NUMBERS | AMOUNT_STRINGS,
    "quantity": NUMBERS,
}


# --- Near-valid messages: a valid order with one thing changed ------------------------


def valid_order() -> st.SearchStrategy[Pairs]:
    return st.sampled_from(VALID_MESSAGES).map(lambda raw: json.loads(raw, object_pairs_hook=Pairs))


@st.composite
def target(draw: st.DrawFn, order: Pairs) -> tuple[Pairs, str]:
    """The order or one of its items, and one of its keys or a new one."""
    items = dict(order)["items"]
    obj = draw(st.sampled_from([order, *items]))
    key = draw(st.one_of(st.sampled_from([name for name, _ in obj]), st.text(max_size=8)))
    return obj, key


@st.composite
def changed_field(draw: st.DrawFn, key: str) -> bytes:
    """``key`` of the order, or of one of its items, set to a value meant for it or to any value."""
    order = draw(valid_order())
    obj = order if key in ORDER_KEYS else draw(st.sampled_from(dict(order)["items"]))
    meant_for_it = draw(st.integers(0, 3)) > 0  # (one_of would flatten ANY_VALUE's branches)
    set_pair(obj, key, draw(FIELD_VALUES[key] if meant_for_it else ANY_VALUE))
    return to_json(order).encode()


@st.composite
def any_key_changed(draw: st.DrawFn) -> bytes:
    order = draw(valid_order())
    obj, key = draw(target(order))
    set_pair(obj, key, draw(ANY_VALUE))
    return to_json(order).encode()


@st.composite
def repeated_key(draw: st.DrawFn) -> bytes:
    order = draw(valid_order())
    obj, key = draw(target(order))
    same = dict(obj).get(key)
    obj.append((key, draw(st.just(same) | FIELD_VALUES.get(key, ANY_VALUE))))
    return to_json(order).encode()


@st.composite
def removed_field(draw: st.DrawFn) -> bytes:
    order = draw(valid_order())
    obj, _ = draw(target(order))
    del obj[draw(st.integers(0, len(obj) - 1))]
    return to_json(order).encode()


@st.composite
def consistent_amounts(draw: st.DrawFn) -> bytes:
    """One line whose price and quantity are drawn freely and a total that matches them."""
    order = draw(valid_order())
    item = dict(order)["items"][0]
    places = draw(st.integers(0, 3))
    price = draw(st.one_of(st.decimals(min_value=Decimal("0.001"), max_value=10**9, places=places),
                           st.sampled_from([Decimal("0.01"), Decimal("0.02")])))
    quantity = draw(st.one_of(st.integers(1, 2_000), st.integers(INTEGER_MAX - 2, INTEGER_MAX + 2),
                              st.integers(1, 10**12)))
    as_text = draw(st.booleans())
    set_pair(item, "unit_price", str(price) if as_text else Raw(str(price)))
    set_pair(item, "quantity", quantity)
    set_pair(order, "items", [item])
    set_pair(order, "total", str(price * quantity) if as_text else Raw(str(price * quantity)))
    return to_json(order).encode()


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A valid message re-encoded, cut short, or with one byte changed."""
    raw = draw(st.sampled_from(VALID_MESSAGES))
    damage = draw(st.sampled_from(["encoding", "cut", "byte"]))
    if damage == "encoding":
        return raw.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32-be", "utf-8-sig"])))
    index = draw(st.integers(0, len(raw) - 1))
    if damage == "cut":
        return raw[:index]
    return raw[:index] + bytes([draw(st.integers(0, 255))]) + raw[index + 1 :]


@st.composite
def repeated_lines(draw: st.DrawFn) -> bytes:
    """The first line repeated up to past the most lines an order may have, with its total."""
    order = draw(valid_order())
    item = dict(order)["items"][0]
    count = draw(st.integers(1, 105))
    line = dict(item)
    set_pair(order, "items", [item] * count)
    set_pair(order, "total", str(Decimal(line["unit_price"]) * line["quantity"] * count))
    return to_json(order).encode()


# --- Version 2: bills whose amounts keep the rule, or miss it ------------------------------

V2_AMOUNT_FIELDS = ("discount", "service_charge", "delivery_fee", "tip")


def cents(amount: int) -> Decimal:
    return Decimal(amount).scaleb(-2)


@st.composite
def written_amount(draw: st.DrawFn, amount: Decimal, optional: bool = False) -> Any:
    """``amount`` as a producer might write it: a decimal string, a JSON number, or (if 0 and
    ``optional``) left out or null."""
    forms = ["string", "number"] + (["absent", "null"] if optional and amount == 0 else [])
    form = draw(st.sampled_from(forms))
    return {"string": str(amount), "number": Raw(str(amount)), "absent": None, "null": Raw("null")}[form]


def set_amount(pairs: Pairs, key: str, written: Any) -> None:
    if written is not None:
        set_pair(pairs, key, written)


@st.composite
def v2_bill(draw: st.DrawFn) -> bytes:
    """A version 2 order: a generated order's lines with drawn discounts, charges, tip and split
    payments, every amount keeping the rule, or one of them (``off``) moved by a cent or more."""
    order = json.loads(draw(st.sampled_from(GENERATED)), object_pairs_hook=Pairs)
    del order[[name for name, _ in order].index("payment_method")]
    set_pair(order, "schema_version", 2)
    near = st.one_of(st.integers(0, 3_000), st.integers(0, 10**9))
    lines = Decimal(0)
    for item in dict(order)["items"]:
        subtotal = Decimal(dict(item)["unit_price"]) * dict(item)["quantity"]
        discount = min(cents(draw(near)), subtotal) if draw(st.booleans()) else Decimal(0)
        set_amount(item, "discount", draw(written_amount(discount, optional=True)))
        lines += subtotal - discount
    amounts = {name: cents(draw(near)) if draw(st.booleans()) else Decimal(0) for name in V2_AMOUNT_FIELDS}
    amounts["discount"] = min(amounts["discount"], lines)
    total = lines - amounts["discount"] + amounts["service_charge"] + amounts["delivery_fee"]
    paid = int((total + amounts["tip"]) * 100)
    off = draw(st.sampled_from(["none"] * 4 + ["total", "payment", *V2_AMOUNT_FIELDS]))
    delta = cents(draw(st.sampled_from([-1, 1, -100, 7, draw(st.integers(-10**6, 10**6))])))
    for name, amount in amounts.items():
        set_amount(order, name, draw(written_amount(amount + (delta if off == name else 0), optional=True)))
    if draw(st.booleans()):
        flags = [True, False, None] * 3 + [1, "true"]
        set_pair(order, "service_charge_is_revenue", draw(st.sampled_from(flags)))
    set_pair(order, "total", draw(written_amount(total + (delta if off == "total" else 0))))
    parts = draw(st.lists(st.integers(1, 100), min_size=1, max_size=11))
    shares = [cents(paid * part // sum(parts)) for part in parts]
    shares[0] += cents(paid) - sum(shares)
    shares[-1] += delta if off == "payment" else 0
    set_pair(order, "payments", [Pairs([("method", draw(st.sampled_from(PAYMENT_METHODS))),
                                        ("amount", draw(written_amount(share)))]) for share in shares])
    return to_json(order).encode()


VALID_V2 = [
    b'{"schema_version":2,"order_id":"3f2c8a4e-9b1d-4c6f-8e2a-7d5b1c9e0f13","created_at":"'
    + NOW.isoformat().encode() + b'","channel":"dine_in","items":[{"dish":"Picanha",'
    b'"category":"prato principal","unit_price":"89.90","quantity":2,"discount":"9.80"}],'
    b'"discount":"10.00","service_charge":"16.00",'
    b'"tip":"5.00","total":"176.00","payments":[{"method":"pix","amount":"100.00"},'
    b'{"method":"credit_card","amount":"81.00"}]}',
]
V2_FIELD_VALUES = {
    **{name: NUMBERS | AMOUNT_STRINGS | as_json(st.none()) for name in V2_AMOUNT_FIELDS},
    "service_charge_is_revenue": as_json(st.sampled_from([True, False, None, 0, "false"])),
    "payments": deep_nesting() | as_json(st.sampled_from(
        [[], None, [{"method": "pix"}], [{"method": "pix", "amount": "181.00"}]])),
    "payment_method": as_json(st.sampled_from(PAYMENT_METHODS)) | TEXTS,
}


@st.composite
def changed_v2_field(draw: st.DrawFn) -> bytes:
    """A valid version 2 order with one of its fields, or a line's or a payment's, set to another value."""
    order = json.loads(draw(st.sampled_from(VALID_V2)), object_pairs_hook=Pairs)
    where = draw(st.sampled_from(["order", "item", "payment"]))
    if where == "order":
        key = draw(st.sampled_from(sorted(V2_FIELD_VALUES)))
        set_pair(order, key, draw(V2_FIELD_VALUES[key] | ANY_VALUE))
    else:
        obj = dict(order)["items" if where == "item" else "payments"][0]
        key = draw(st.sampled_from(["discount", "unit_price"] if where == "item" else ["method", "amount"]))
        set_pair(obj, key, draw(NUMBERS | AMOUNT_STRINGS | ANY_VALUE))
    return to_json(order).encode()


NEAR_VALID = st.one_of(
    *(changed_field(key) for key in FIELD_VALUES), any_key_changed(), consistent_amounts(),
    repeated_lines(), repeated_key(), removed_field(), damaged_bytes(), st.sampled_from(VALID_MESSAGES),
    v2_bill(), changed_v2_field(), st.sampled_from(VALID_V2),
)


# --- The properties ----------------------------------------------------------------------


@FAST
@given(st.binary(max_size=2_000))
def test_any_bytes_give_an_order_or_a_short_reason(raw: bytes):
    outcome(raw)


@FAST
@given(st.text("[]{}\",:0123456789.eE-+ \\u truefalsnNIiy", max_size=2_000).map(str.encode))
def test_any_json_looking_text_gives_an_order_or_a_short_reason(raw: bytes):
    outcome(raw)


@FAST
@given(as_json(JSON_VALUES).map(str.encode))
def test_any_json_document_gives_an_order_or_a_short_reason(raw: bytes):
    outcome(raw)


@settings(max_examples=1_000, deadline=None)
@given(NEAR_VALID)
def test_near_valid_orders_are_accepted_only_when_they_fit_the_schema(raw: bytes):
    outcome(raw)


@FAST
@given(st.lists(NEAR_VALID, min_size=2, max_size=6))
def test_what_the_fast_path_remembers_of_one_message_changes_no_later_outcome(raws: list[bytes]):
    """Lines and charges the fast path remembers come from earlier messages that share them."""
    for raw in raws:
        outcome(raw)


@pytest.mark.parametrize("raw", VALID_MESSAGES, ids=range(len(VALID_MESSAGES)))
def test_the_valid_messages_the_properties_start_from_are_accepted(raw: bytes):
    assert_fits_schema(parse_order(raw, max_clock_skew=SKEW, now=NOW))


# --- Accepted orders really go into PostgreSQL -----------------------------------------

READ_ORDER = """
SELECT order_id::text, store_id, created_at, customer_id, customer_name, channel, payment_method, total,
       schema_version, discount, service_charge, service_charge_is_revenue, delivery_fee, tip,
       (SELECT array_agg(ROW(p->>'method', (p->>'amount')::numeric)::text ORDER BY n)
        FROM jsonb_array_elements(payments) WITH ORDINALITY AS e (p, n))
FROM orders WHERE order_id = %s
"""
READ_LINES = """
SELECT line_no, dish, category, unit_price, quantity, discount FROM order_items
WHERE order_id = %s ORDER BY line_no
"""


def expected_rows(order: Order) -> tuple[tuple, list[tuple]]:
    payments = [f"({p.method},{p.amount})" for p in order.payments] or None
    row = (order.order_id, order.store_id, order.created_at, order.customer_id, order.customer_name,
           order.channel, order.payment_method, order.total, order.schema_version, order.discount,
           order.service_charge, order.service_charge_is_revenue, order.delivery_fee, order.tip, payments)
    lines = [(n, i.dish, i.category, i.unit_price, i.quantity, i.discount)
             for n, i in enumerate(order.items, 1)]
    return row, lines


def stored_rows(conn: psycopg.Connection, order_id: str) -> tuple[tuple, list[tuple]]:
    (row,) = conn.execute(READ_ORDER, (order_id,)).fetchall()
    return row, conn.execute(READ_LINES, (order_id,)).fetchall()


@pytest.mark.integration
@pytest.mark.parametrize("messages", [NEAR_VALID, v2_bill()], ids=["near valid", "version 2 bills"])
def test_every_accepted_near_valid_order_is_stored_as_parsed(database_url: str, messages):
    with asyncio.Runner() as runner, psycopg.connect(database_url, autocommit=True) as conn:
        database = Database(database_url)
        sink = PostgresOrderSink(database)
        runner.run(sink.ready())
        try:
            store_accepted_orders(runner, sink, conn, messages)
        finally:
            runner.run(database.close())


def store_accepted_orders(runner: asyncio.Runner, sink: PostgresOrderSink, conn: psycopg.Connection,
                          messages: st.SearchStrategy[bytes]) -> None:
    """Save each accepted order through the worker's own save path and read it back."""

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
    @given(messages)
    def store(raw: bytes) -> None:
        order = outcome(raw)
        assume(order is not None)
        # A replayed seed: deleting its key deletes the order and its lines (migration 006).
        conn.execute("DELETE FROM order_keys WHERE order_id = %s", (order.order_id,))
        accepted = Accepted(order, Source("orders", 0, 0, raw))
        assert runner.run(sink.save([accepted])).new_orders == 1
        assert stored_rows(conn, order.order_id) == expected_rows(order)

    store()
