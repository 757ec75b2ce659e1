"""Every way a message can fail to be an order, and the reason it is given."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import MAX_MESSAGE_BYTES, InvalidOrder, parse_order


def valid_payload() -> dict:
    return json.loads(OrderGenerator(seed=11).order().dumps())


def mutated(change) -> bytes:
    payload = valid_payload()
    change(payload)
    return json.dumps(payload).encode()


def set_item(field: str, value):
    return lambda p: p["items"][0].__setitem__(field, value)


def set_field(field: str, value):
    return lambda p: p.__setitem__(field, value)


REJECTIONS = [
    (b"", "empty message"),
    (b"{not json", "not valid JSON"),
    (b'"\xff"', "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"x" * (MAX_MESSAGE_BYTES + 1), "the limit is"),
    (mutated(lambda p: p.pop("customer_id")), "missing field 'customer_id'"),
    (mutated(set_field("customer_id", "abc")), "'customer_id' must be an integer"),
    (mutated(set_field("customer_id", True)), "'customer_id' must be an integer"),
    (mutated(set_field("customer_id", -4)), "'customer_id' must be positive"),
    (mutated(set_field("customer_name", "  ")), "'customer_name' is empty"),
    (mutated(set_field("customer_name", "Ana\x00")), "NUL character"),
    (mutated(set_field("customer_name", "A" * 500)), "longer than"),
    (mutated(set_field("items", [])), "order has no items"),
    (mutated(set_field("items", "pizza")), "'items' must be a list"),
    (mutated(set_field("items", ["pizza"])), "items[0] must be an object"),
    (mutated(set_item("unit_price", -10)), "'items[0].unit_price' must be positive"),
    (mutated(set_item("unit_price", "free")), "must be an amount in BRL"),
    (mutated(set_item("unit_price", 10.999)), "more than 2 decimal places"),
    (mutated(set_item("unit_price", 10**9)), "over the limit"),
    (mutated(set_item("quantity", 0)), "'items[0].quantity' must be positive"),
    (mutated(set_item("quantity", 2.5)), "'items[0].quantity' must be an integer"),
    (mutated(set_item("quantity", 10**6)), "over the limit"),
    (mutated(lambda p: p["items"][0].pop("dish")), "missing field 'items[0].dish'"),
    (mutated(set_field("channel", "drone")), "unknown channel 'drone'"),
    (mutated(set_field("payment_method", "bitcoin")), "unknown payment_method"),
    (mutated(set_field("total", "1.00")), "does not equal the sum of the items"),
    (mutated(set_field("order_id", "42")), "'order_id' must be a UUID"),
    (mutated(set_field("created_at", "yesterday")), "ISO 8601"),
    (mutated(set_field("created_at", "2026-01-01T10:00:00")), "must include a time zone"),
    (mutated(set_field("created_at", "1999-12-31T23:59:00+00:00")), "is before 2000-01-01"),
    (
        mutated(set_field("created_at", (datetime.now(UTC) + timedelta(days=3)).isoformat())),
        "more than a day in the future",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTIONS, ids=[r for _, r in REJECTIONS])
def test_invalid_messages_are_rejected_with_a_clear_reason(raw: bytes, reason: str):
    with pytest.raises(InvalidOrder) as error:
        parse_order(raw)
    assert reason in str(error.value)


def test_a_valid_order_round_trips_exactly():
    order = OrderGenerator(seed=5).order()
    parsed = parse_order(order.dumps())
    assert parsed.order_id == order.order_id
    assert parsed.created_at == order.created_at
    assert parsed.total == order.total
    assert [(i.dish, i.unit_price, i.quantity) for i in parsed.items] == [
        (i.dish, i.unit_price, i.quantity) for i in order.items
    ]


def test_prices_may_be_json_numbers_or_decimal_strings():
    by_number = mutated(set_item("unit_price", 54.9))
    payload = json.loads(by_number)
    payload["total"] = float(sum(Decimal(str(i["unit_price"])) * i["quantity"] for i in payload["items"]))
    assert parse_order(json.dumps(payload).encode()).items[0].unit_price == Decimal("54.90")
