"""Version 2 of the order contract: the whole bill (discounts, service charge, delivery fee, tip,
split payments), its rule and the reason for each way of breaking it, on both parsing paths."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.validation import InvalidOrder, fast_path_order, full_path_order, parse_order
from tests.services import produce, query, wait_until
from tests.test_contract import page_examples

SKEW = timedelta(minutes=5)


def v2_examples() -> list[dict]:
    return [m for m in map(json.loads, page_examples()) if m.get("schema_version") == 2]


def dine_in() -> dict:
    """The page's dine-in bill: a discounted line, a coupon, service charge, a tip, two payments."""
    return v2_examples()[0]


def encoded(message: dict, compact: bool = True) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(message, ensure_ascii=False, separators=separators).encode()


def both_paths(raw: bytes):
    """The order (or the reason) of the full path, once the fast path agrees with it."""
    now = datetime.now(UTC)
    try:
        full = full_path_order(raw, now, SKEW)
    except InvalidOrder as rejection:
        assert fast_path_order(raw, now, SKEW) is None
        return str(rejection)
    fast = fast_path_order(raw, now, SKEW)
    assert fast is None or fast == full
    return full


def test_the_pages_dine_in_bill_is_read_amount_by_amount():
    order = both_paths(encoded(dine_in()))
    assert fast_path_order(encoded(dine_in()), datetime.now(UTC), SKEW) == order  # the usual form
    assert order.schema_version == 2
    assert [line.discount for line in order.items] == [Decimal(0), Decimal("24.90")]
    assert [line.net for line in order.items] == [Decimal("179.80"), Decimal("24.90")]
    assert (order.discount, order.service_charge, order.delivery_fee, order.tip) == (
        Decimal("10.00"), Decimal("19.47"), Decimal(0), Decimal("5.00"))
    assert order.service_charge_is_revenue is False
    assert order.total == Decimal("214.17")
    assert [(p.method, p.amount) for p in order.payments] == [
        ("pix", Decimal("100.00")), ("credit_card", Decimal("119.17"))]
    assert order.payment_method == "credit_card"  # the method that paid the most


def test_a_v2_order_is_written_and_read_back_the_same_on_the_fast_path():
    order = parse_order(encoded(dine_in()))
    assert json.loads(order.dumps())["payments"] == dine_in()["payments"]
    assert "payment_method" not in json.loads(order.dumps())
    assert fast_path_order(order.dumps(), datetime.now(UTC), SKEW) == order


def test_left_out_and_null_amounts_are_zero_and_json_numbers_are_exact():
    delivery = v2_examples()[1]
    spelled = {**delivery, "discount": None, "service_charge": None, "tip": 0,
               "service_charge_is_revenue": None, "delivery_fee": 8.9}
    assert both_paths(encoded(spelled, compact=False)) == both_paths(encoded(delivery))
    assert both_paths(encoded(delivery)).delivery_fee == Decimal("8.90")


def test_version_2_fields_in_a_version_1_message_are_ignored_on_both_paths():
    v1 = json.loads(page_examples()[0])
    raw = encoded({**v1, "tip": "5.00", "payments": [{"method": "pix", "amount": "1.00"}]})
    order = both_paths(raw)
    assert fast_path_order(raw, datetime.now(UTC), SKEW) == order
    assert order.schema_version == 1 and order.tip == 0 and order.payments == ()


def changed(**fields) -> bytes:
    return encoded({**dine_in(), **fields})


def line(index: int, **fields) -> bytes:
    message = dine_in()
    message["items"][index].update(fields)
    return encoded(message)


REJECTIONS = [
    (changed(total="214.18"), "total 214.18 does not equal lines 204.70 - discount 10.00"
                              " + service charge 19.47 + delivery fee 0.00 = 214.17"),
    (changed(service_charge="19.48"), "total 214.17 does not equal lines 204.70 - discount 10.00"
                                      " + service charge 19.48 + delivery fee 0.00 = 214.18"),
    (changed(tip="5.01"), "payments add up to 219.17, not total 214.17 + tip 5.01 = 219.18"),
    (changed(payments=[{"method": "pix", "amount": "100.00"}]),
     "payments add up to 100.00, not total 214.17 + tip 5.00 = 219.17"),
    (changed(payments=[]), "order has no payments"),
    (changed(payments=[{"method": "pix", "amount": "0.01"}] * 11), "order has 11 payments, the limit is 10"),
    (changed(payments=["pix"]), "payments[0] must be an object"),
    (changed(payments=[{"method": "cheque", "amount": "219.17"}]), "unknown payments[0].method 'cheque'"),
    (changed(payments=[{"method": "pix", "amount": "0"}]), "'payments[0].amount' must be positive, got 0"),
    (changed(payments=[{"method": "pix"}]), "missing field 'payments[0].amount'"),
    (changed(payments=None), "missing field 'payments'"),
    (changed(discount="-1.00"), "'discount' must be an amount in BRL such as 12.50"),
    (changed(discount=-1), "'discount' must be 0 or more, got -1"),
    (changed(discount="204.71"), "'discount' 204.71 is more than the lines' 204.70 after their discounts"),
    (changed(tip="5.001"), "must be an amount in BRL such as 12.50"),
    (changed(tip=5.001), "'tip' has more than 2 decimal places: 5.001"),
    (changed(service_charge_is_revenue="no"), "'service_charge_is_revenue' must be true or false, got 'no'"),
    (changed(service_charge_is_revenue=1), "'service_charge_is_revenue' must be true or false, got 1"),
    (line(1, discount="49.81"), "'items[1].discount' 49.81 is more than the line's 49.80"),
    (changed(items=[{"dish": "Água", "category": "bebida", "unit_price": "5.00", "quantity": 1,
                     "discount": "5.00"}], discount="0", service_charge="0", total="0.00"),
     "'total' must be positive, got 0.00"),
    (changed(schema_version=3), "unknown schema_version 3; this pipeline reads versions 1 and 2"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTIONS, ids=[reason for _, reason in REJECTIONS])
def test_each_broken_rule_is_rejected_with_its_reason_on_both_paths(raw: bytes, reason: str):
    given = both_paths(raw)
    assert isinstance(given, str) and reason in given, given


# --- The real worker: version 1 and 2 side by side, idempotent ----------------------------

READ_BILLS = """
SELECT order_id::text, schema_version, payment_method, total, discount, service_charge,
       service_charge_is_revenue, delivery_fee, tip, payments,
       (SELECT array_agg(discount ORDER BY line_no) FROM order_items i WHERE i.order_id = o.order_id)
FROM orders o ORDER BY created_at
"""


@pytest.mark.integration
def test_the_worker_stores_v1_and_v2_orders_and_rejects_a_conflicting_v2_bill(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    now = datetime.now(UTC)
    def at(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat()

    bills = [{**m, "created_at": at(5 - n)} for n, m in enumerate(v2_examples())]
    v1 = {**json.loads(page_examples()[1]), "created_at": at(9)}
    other_payments = {**bills[0], "payments": [{"method": "cash", "amount": "219.17"}]}
    messages = [encoded(v1), encoded(bills[0]), encoded(bills[1]), encoded(bills[0], compact=False),
                encoded(other_payments)]
    worker.start()
    keyed = [(json.loads(m)["order_id"].encode(), m) for m in messages]  # one partition per order: in order
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], keyed)

    rejected = wait_until(lambda: query(database_url, "SELECT raw, reason FROM rejected_orders") or None,
                          message="the conflicting bill was never rejected")
    conflict = f"conflicting duplicate of order {bills[0]['order_id']}: same order_id, different content"
    assert [(bytes(raw), reason) for raw, reason in rejected] == [(messages[-1], conflict)]
    rows = query(database_url, READ_BILLS)
    assert [row[:2] for row in rows] == [(m["order_id"], m.get("schema_version", 1)) for m in [v1, *bills]]
    assert rows[0][2:] == ("credit_card", Decimal("50.70"), 0, 0, False, 0, 0, None, [0])
    assert rows[1][2:] == ("credit_card", Decimal("214.17"), Decimal("10.00"), Decimal("19.47"), False, 0,
                           Decimal("5.00"), bills[0]["payments"], [0, Decimal("24.90")])
    assert rows[2][7] == Decimal("8.90") and rows[2][9] == [{"method": "pix", "amount": "85.70"}]
