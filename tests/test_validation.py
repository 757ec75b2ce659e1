"""Every way a message can fail to be an order, and the reason it is given."""

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import (
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_REASON_LENGTH,
    InvalidOrder,
    fast_path_order,
    full_path_order,
    parse_order,
)

SLOT = "\x00slot\x00"


def valid_payload() -> dict:
    return json.loads(OrderGenerator(seed=11).order().dumps())


def mutated(change, **json_options) -> bytes:
    payload = valid_payload()
    change(payload)
    return json.dumps(payload, **json_options).encode()


def set_item(field: str, value):
    return lambda p: p["items"][0].__setitem__(field, value)


def set_field(field: str, value):
    return lambda p: p.__setitem__(field, value)


def with_json(change, fragment: str) -> bytes:
    """A valid order whose value set to ``SLOT`` by ``change`` is replaced by the JSON text ``fragment``."""
    return mutated(change).replace(json.dumps(SLOT).encode(), fragment.encode(), 1)


def valid_text() -> str:
    return mutated(lambda p: None).decode()


def at(offset_hours: float, ahead: timedelta = timedelta(0)) -> str:
    """The current time plus ``ahead``, written with a UTC offset of ``offset_hours``."""
    zone = timezone(timedelta(hours=offset_hours))
    return (datetime.now(UTC) + ahead).astimezone(zone).isoformat()


REJECTIONS = [
    (b"", "empty message"),
    (b"{not json", "not valid JSON"),
    (b'"\xff"', "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"x" * (MAX_MESSAGE_BYTES + 1), "the limit is"),
    (mutated(lambda p: p.pop("channel")), "missing field 'channel'"),
    (mutated(set_field("schema_version", 3)),
     "unknown schema_version 3; this pipeline reads versions 1 and 2"),
    (mutated(set_field("schema_version", "1")), "unknown schema_version '1'"),
    (mutated(set_field("schema_version", 1.0)), "unknown schema_version Decimal('1.0')"),
    (mutated(set_field("store_id", "Loja 1")), "'store_id' must be 1 to 32 lowercase letters"),
    (mutated(set_field("store_id", "")), "'store_id' must be 1 to 32"),
    (mutated(set_field("store_id", "a" * 33)), "'store_id' must be 1 to 32"),
    (mutated(set_field("store_id", 7)), "'store_id' must be text, got 7"),
    (mutated(set_field("customer_id", "abc")), "'customer_id' must be an integer"),
    (mutated(set_field("customer_id", True)), "'customer_id' must be an integer"),
    (mutated(set_field("customer_id", -4)), "'customer_id' must be positive"),
    (mutated(set_field("customer_name", "  ")), "'customer_name' is empty"),
    (mutated(set_field("customer_name", "Ana\x00")), "NUL character"),
    (mutated(set_field("customer_name", "Ana\x07")), "U+0007 character (control)"),
    (mutated(set_field("customer_name", "\x1b[31mAna\x1b[0m")), "U+001B character (control)"),
    (mutated(set_field("customer_name", "Ana\r\nBob")), "U+000D character (control)"),
    (mutated(set_field("customer_name", "Ana\n")), "U+000A character (control)"),
    (mutated(set_field("customer_name", "Ana\u2028Bob")), "U+2028 character (line separator)"),
    (mutated(set_field("customer_name", "\u202eanA")), "U+202E character (format"),
    (mutated(set_field("customer_name", "Ana\u200b")), "U+200B character (format"),
    (mutated(set_field("customer_name", "Ana\ud800")), "U+D800 character (lone surrogate)"),
    (mutated(set_item("dish", "Pizza\udfff")), "'items[0].dish' contains a U+DFFF character"),
    (mutated(set_item("category", "\x85bebida")), "'items[0].category' contains a U+0085"),
    (mutated(set_field("customer_name", "A" * 500)), "longer than"),
    (mutated(set_field("items", [])), "order has no items"),
    (mutated(set_field("items", "pizza")), "'items' must be a list"),
    (mutated(set_field("items", ["pizza"])), "items[0] must be an object"),
    (mutated(set_item("unit_price", -10)), "'items[0].unit_price' must be positive"),
    (mutated(set_item("unit_price", "free")), "must be an amount in BRL"),
    (mutated(set_item("unit_price", 10.999)), "more than 2 decimal places"),
    (mutated(set_item("unit_price", 10**9)), "over the limit"),
    (mutated(set_item("unit_price", 100_000.01)), "'items[0].unit_price' 100000.01 is over the limit"),
    (mutated(set_item("unit_price", 1e26)), "over the limit"),
    (mutated(set_item("unit_price", 1e30)), "over the limit"),
    (mutated(set_field("total", 1e26)), "'total' 1E+26 is over the limit"),
    (mutated(set_field("total", 10**10)), "'total' 10000000000 is over the limit"),
    (with_json(set_field("total", SLOT), "1e999999999999999999999999999"), "number out of range"),
    (with_json(set_field("total", SLOT), "1" * 41), "number of 41 characters"),
    (with_json(set_field("customer_id", SLOT), "9" * 4301), "number of 4301 characters"),
    (with_json(set_field("customer_id", SLOT), "1.5e99999"), "'customer_id' must be an integer"),
    (mutated(set_field("total", float("nan"))), "message has NaN"),
    (mutated(set_item("unit_price", float("inf"))), "message has Infinity"),
    (mutated(set_field("total", float("-inf"))), "message has -Infinity"),
    (mutated(set_item("unit_price", "1_0.00")), "amount in BRL such as 12.50, got '1_0.00'"),
    (mutated(set_item("unit_price", "\u0661\u0660.00")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "\uff11\uff10.00")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", " 10.00")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "10.00\n")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "10.000")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "-10.00")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "1e3")), "amount in BRL such as 12.50"),
    (mutated(set_item("unit_price", "NaN")), "amount in BRL such as 12.50"),
    (mutated(set_item("quantity", 0)), "'items[0].quantity' must be positive"),
    (mutated(set_item("quantity", 2.5)), "'items[0].quantity' must be an integer"),
    (mutated(set_item("quantity", 10**6)), "over the limit"),
    (mutated(set_item("quantity", 2**31)), "'items[0].quantity' 2147483648 is over the limit"),
    (mutated(set_field("customer_id", 2**63)), "'customer_id' 9223372036854775808 is over the limit"),
    (mutated(lambda p: p["items"].extend(p["items"][:1] * 101)), "the limit is 100"),
    (mutated(lambda p: p["items"][0].pop("dish")), "missing field 'items[0].dish'"),
    (mutated(set_field("channel", "drone")), "unknown channel 'drone'"),
    (mutated(set_field("payment_method", "bitcoin")), "unknown payment_method"),
    (mutated(set_field("total", "1.00")), "does not equal the sum of the items"),
    (mutated(set_field("order_id", "42")), "'order_id' must be a UUID"),
    (mutated(set_field("order_id", "00000000-0000-0000-0000-000000000000")), "nil or max UUID"),
    (mutated(set_field("order_id", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")), "nil or max UUID"),
    (mutated(set_field("order_id", "0000000_-1234-1234-1234-1234567890ab")), "must be a UUID"),
    (mutated(set_field("order_id", "\u0661" * 8 + "-1234-1234-1234-1234567890ab")), "must be a UUID"),
    (mutated(set_field("order_id", "{12345678-1234-1234-1234-1234567890ab}")), "must be a UUID"),
    (mutated(set_field("created_at", "yesterday")), "ISO 8601"),
    (mutated(set_field("created_at", "2026-01-01T10:00:00")), "must include a time zone"),
    (mutated(set_field("created_at", "1999-12-31T23:59:00+00:00")), "is before 2000-01-01"),
    (mutated(set_field("created_at", at(0, timedelta(days=3)))), "more than 300 s in the future"),
    (mutated(set_field("created_at", at(0, timedelta(hours=23)))), "more than 300 s in the future"),
    (mutated(set_field("created_at", at(0, timedelta(hours=1)))), "more than 300 s in the future"),
    (mutated(set_field("created_at", at(16))), "more than 14:00:00 from UTC"),
    (mutated(set_field("created_at", at(-23.5))), "more than 14:00:00 from UTC"),
    (mutated(set_field("created_at", "2026-01-01T10:00:00+05:75")), "ISO 8601"),
    (mutated(set_field("created_at", "2026-01-01x10:00:00+00:00")), "ISO 8601"),
    (mutated(set_field("created_at", "2026-W01-1T10:00:00+00:00")), "ISO 8601"),
    (mutated(set_field("created_at", "\u0662\u0660\u0662\u0666-01-01T10:00:00Z")), "ISO 8601"),
    (mutated(set_field("created_at", "2026-02-30T10:00:00Z")), "not a real date and time"),
    (mutated(set_field("created_at", "9999-12-31T23:59:59-14:00")), "in the future"),
    (mutated(set_field("created_at", "0001-01-01T00:00:00+14:00")), "is before 2000-01-01"),
    (b"[" * 10_000, f"nests deeper than {MAX_NESTING} levels"),
    (b'{"items": ' + b"[" * 2_000 + b"]" * 2_000 + b"}", "nests deeper than"),
    (with_json(set_field("customer_name", SLOT), "[" * 1_000 + "]" * 1_000), "nests deeper than"),
    (valid_text().encode("utf-16"), "not UTF-8"),
    (valid_text().encode("utf-16-le"), "not UTF-8"),
    (valid_text().encode("utf-16-be"), "not UTF-8"),
    (valid_text().encode("utf-32"), "not UTF-8"),
    (valid_text().encode("utf-32-le"), "not UTF-8"),
    (valid_text().encode("utf-8-sig"), "Unexpected UTF-8 BOM"),
    ('"\ud800"'.encode("utf-8", "surrogatepass"), "not UTF-8"),
    (b'{"total": "1.00", ' + valid_text().encode()[1:], "repeats the key 'total'"),
    (with_json(set_item("quantity", SLOT), '1, "quantity": 1'), "repeats the key 'quantity'"),
    (mutated(set_field("channel", "x" * 60_000)), "unknown channel 'xxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxx'"),
    (mutated(set_field("customer_id", "\x1b[2J" * 2_000)), "'customer_id' must be an integer, got '\\x1b[2J"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTIONS, ids=[r for _, r in REJECTIONS])
def test_invalid_messages_are_rejected_with_a_clear_reason(raw: bytes, reason: str):
    with pytest.raises(InvalidOrder) as error:
        parse_order(raw)
    assert reason in str(error.value)
    assert len(str(error.value)) <= MAX_REASON_LENGTH
    assert str(error.value).isprintable()


def test_a_valid_order_round_trips_exactly():
    order = OrderGenerator(seed=5).order()
    parsed = parse_order(order.dumps())
    assert parsed.order_id == order.order_id
    assert parsed.created_at == order.created_at
    assert parsed.total == order.total
    assert [(i.dish, i.unit_price, i.quantity) for i in parsed.items] == [
        (i.dish, i.unit_price, i.quantity) for i in order.items
    ]


def test_a_remembered_price_or_dish_is_checked_the_same_every_time_it_comes():
    """The fast path remembers the menu's checked names and prices; a bad one is refused each time."""
    good, bad_price, bad_dish = valid_payload(), valid_payload(), valid_payload()
    bad_price["items"][0]["unit_price"] = "12.345"
    bad_dish["items"][0]["dish"] = "   "
    for _ in range(2):
        price = parse_order(json.dumps(good).encode()).items[0].unit_price
        assert price == Decimal(good["items"][0]["unit_price"])
        with pytest.raises(InvalidOrder, match="unit_price' must be an amount"):
            parse_order(json.dumps(bad_price).encode())
        with pytest.raises(InvalidOrder, match="dish' is empty"):
            parse_order(json.dumps(bad_dish).encode())


def test_prices_may_be_json_numbers_or_decimal_strings():
    by_number = mutated(set_item("unit_price", 54.9))
    payload = json.loads(by_number)
    payload["total"] = float(sum(Decimal(str(i["unit_price"])) * i["quantity"] for i in payload["items"]))
    assert parse_order(json.dumps(payload).encode()).items[0].unit_price == Decimal("54.90")


def test_created_at_is_stored_in_utc_at_the_same_instant():
    local = at(-3)
    parsed = parse_order(mutated(set_field("created_at", local)))
    assert parsed.created_at == datetime.fromisoformat(local)
    assert parsed.created_at.utcoffset() == timedelta(0)


def test_the_clock_skew_allowed_and_the_current_time_are_parameters():
    raw = mutated(set_field("created_at", at(0, timedelta(minutes=10))))
    with pytest.raises(InvalidOrder, match="in the future"):
        parse_order(raw)
    assert parse_order(raw, max_clock_skew=timedelta(hours=1))
    with pytest.raises(InvalidOrder, match="more than 3600 s in the future"):
        parse_order(raw, max_clock_skew=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=1))


@pytest.mark.parametrize("name", ["José Ñandú", "Zoë\u00a0Smith", "李小龍", "محمد", "Ana 🍕", "  Ana  "])
def test_names_in_any_script_are_accepted(name: str):
    assert parse_order(mutated(set_field("customer_name", name))).customer_name == name.strip()


def test_an_upper_case_order_id_is_accepted_in_lower_case():
    order_id = "0E8F5B3A-1C2D-4E5F-8A9B-0C1D2E3F4A5B"
    assert parse_order(mutated(set_field("order_id", order_id))).order_id == order_id.lower()


# --- The fast path: msgspec decodes the usual form; anything else gets the full path's reason --


def test_every_generated_order_takes_the_fast_path_and_gives_what_the_full_path_gives():
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    for seed in range(50):
        raw = OrderGenerator(seed=seed).order(now).dumps()
        fast = fast_path_order(raw, now, skew)
        assert fast is not None, raw
        assert fast == full_path_order(raw, now, skew)


@pytest.mark.parametrize("change", [
    lambda p: [p.pop("customer_id"), p.pop("customer_name")],
    lambda p: p.update(customer_id=None, customer_name=None),
    lambda p: [p.pop("schema_version"), p.pop("store_id")],
    lambda p: p.update(schema_version=None, store_id=None),
    lambda p: p.update(store_id="loja-02", customer_name=None),
], ids=["anonymous", "anonymous as null", "unversioned", "nulls", "another store"])
def test_the_optional_fields_take_the_fast_path_left_out_or_null(change):
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    raw = usual_form(change)
    fast = fast_path_order(raw, now, skew)
    assert fast is not None, raw
    assert fast == full_path_order(raw, now, skew)
    payload = json.loads(raw)
    assert fast.customer_id == payload.get("customer_id")
    assert fast.store_id == (payload.get("store_id") or "main")
    assert fast.schema_version == 1


def test_an_order_written_in_ascii_only_json_takes_the_fast_path_and_gives_what_the_full_path_gives():
    """Producers that escape every accent (``Jo\\u00e3o``) get msgspec's speed too."""
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    raw = mutated(set_field("customer_name", "João Cônego\u00a0Müller"), ensure_ascii=True)
    assert b"\\u00e3" in raw
    fast = fast_path_order(raw, now, skew)
    assert fast is not None and fast == full_path_order(raw, now, skew)
    assert fast.customer_name == "João Cônego\u00a0Müller"


@pytest.mark.parametrize("name", ['Ana "Aninha" Souza', "C:\\Ana"],
                         ids=["escaped quote", "escaped backslash"])
def test_an_escaped_quote_or_backslash_goes_to_the_full_path(name: str):
    """Then a quote may not open or close a string, and the fast path's count of them is wrong."""
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    raw = usual_form(set_field("customer_name", name))
    assert fast_path_order(raw, now, skew) is None
    assert parse_order(raw, max_clock_skew=skew, now=now).customer_name == name


def usual_form(change) -> bytes:
    """A valid order changed by ``change``, written as the generator writes: compact, raw UTF-8."""
    return mutated(change, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(("raw", "reason"), [
    (usual_form(lambda p: None)[:-1] + b',"total":"1.00"}', "repeats the key 'total'"),
    (usual_form(lambda p: None).replace(b'"quantity":', b'"quantity":7,"quantity":', 1),
     "repeats the key 'quantity'"),
    (usual_form(set_field("channel", "drive_thru")), "unknown channel 'drive_thru'"),
    (usual_form(set_item("quantity", 0)), "'items[0].quantity' must be positive, got 0"),
    (usual_form(set_item("unit_price", "1e3")), "'items[0].unit_price' must be an amount in BRL"),
    (usual_form(set_field("total", "0.01")), "does not equal the sum of the items"),
    (usual_form(set_field("customer_name", "Ana\u202e")), "'customer_name' contains a U+202E character"),
    (usual_form(set_field("order_id", "00000000-0000-0000-0000-000000000000")), "is the nil or max UUID"),
    (usual_form(set_field("created_at", "2026-11-29T18:00:00")), "must include a time zone"),
], ids=["total twice", "quantity twice", "channel", "quantity", "price", "total", "bidi", "nil id", "naive"])
def test_an_order_in_the_usual_form_that_breaks_a_rule_gets_the_full_paths_reason(raw: bytes, reason: str):
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    assert fast_path_order(raw, now, skew) is None
    with pytest.raises(InvalidOrder, match=re.escape(reason)):
        parse_order(raw, max_clock_skew=skew, now=now)


@pytest.mark.parametrize("change", [
    set_field("customer_name", "  Ana  "),
    set_field("order_id", "0E8F5B3A-1C2D-4E5F-8A9B-0C1D2E3F4A5B"),
    lambda p: p.__setitem__("note", "no onions"),
    lambda p: p["items"][0].__setitem__("unit_price", float(p["items"][0]["unit_price"])),
], ids=["padded name", "upper-case id", "unknown field", "price as a number"])
def test_an_unusual_but_valid_order_is_accepted_as_the_full_path_reads_it(change):
    now, skew = datetime.now(UTC), timedelta(minutes=5)
    raw = usual_form(change)
    assert parse_order(raw, max_clock_skew=skew, now=now) == full_path_order(raw, now, skew)
