"""Cancellations and refunds: messages of their own kind on the orders topic, each stored once by
its event_id against its stored order, or rejected with its reason; never lost."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.events import EventRefused, EventTarget, judged
from restaurant_app.models import Order, OrderEvent
from restaurant_app.validation import InvalidOrder, parse_message
from tests.services import consume_all, fetch, produce, query, wait_until
from tests.test_contract import page_examples
from tests.test_contract_v2 import dine_in, encoded

NOW = datetime.now(UTC)


def event(kind: str = "refund", **fields) -> dict:
    base = {"kind": kind, "event_id": str(uuid.uuid4()), "order_id": dine_in()["order_id"],
            "created_at": NOW.isoformat(), "reason": "prato voltou frio"}
    if kind == "refund":
        base.update(amount="24.90", lines=[2])
    return {**base, **fields}


def test_a_message_of_kind_refund_or_cancellation_is_an_event_and_any_other_an_order():
    refund = parse_message(encoded(event()), now=NOW)
    assert isinstance(refund, OrderEvent)
    assert (refund.kind, refund.amount, refund.lines) == ("refund", Decimal("24.90"), (2,))
    cancellation = parse_message(encoded(event("cancellation")), now=NOW)
    assert cancellation.kind == "cancellation" and cancellation.amount is None and cancellation.lines == ()
    assert isinstance(parse_message(encoded(dine_in())), Order)
    assert isinstance(parse_message(encoded({**dine_in(), "kind": "order"})), Order)


def test_the_pages_refund_is_an_event():
    (raw,) = page_examples(orders=False)
    refund = parse_message(raw, now=NOW)
    assert isinstance(refund, OrderEvent) and refund.lines == (2,)
    assert refund.order_id == dine_in()["order_id"]


@pytest.mark.parametrize(("message", "reason"), [
    (event(kind="void"), "unknown kind 'void'; expected order, cancellation, refund"),
    (event(amount=None), "missing field 'amount'"),
    (event(amount="0"), "'amount' must be positive, got 0"),
    (event(event_id="42"), "'event_id' must be a UUID in its 36-character form, got '42'"),
    (event(event_id=str(uuid.UUID(int=0))), "is the nil or max UUID, not an event's"),
    (event(order_id=None), "missing field 'order_id'"),
    (event(reason=" "), "'reason' is empty"),
    (event(lines=[0]), "'lines' must hold line numbers, 1 to 100; got 0"),
    (event(lines=[1, 1]), "'lines' names a line twice"),
    (event(created_at=(NOW + timedelta(hours=1)).isoformat()), "in the future"),
    (event("cancellation", created_at=(NOW - timedelta(days=9)).isoformat()), "more than 7 days in the past"),
])
def test_a_bad_event_is_rejected_with_its_reason(message: dict, reason: str):
    with pytest.raises(InvalidOrder) as rejection:
        parse_message(encoded(message), now=NOW, max_age=timedelta(days=7))
    assert reason in str(rejection.value)


def target(**changes) -> EventTarget:
    fields = {"created_at": NOW - timedelta(hours=1), "total": Decimal("214.17"), "store_id": "main",
              "staff_service_charge": Decimal("19.47"), "lines": 2, "taken": Decimal(0),
              "revenue_taken": Decimal(0), "cancelled_by": None}
    return EventTarget(**{**fields, **changes})


def as_event(message: dict) -> OrderEvent:
    return parse_message(encoded(message), now=NOW)


def test_what_a_refund_and_a_cancellation_take_back():
    assert judged(as_event(event()), target()) == (Decimal("24.90"), Decimal("24.90"))
    # A cancellation takes what is left; of revenue, all but the staff's service charge.
    assert judged(as_event(event("cancellation")), target()) == (Decimal("214.17"), Decimal("194.70"))
    after_refund = target(taken=Decimal("24.90"), revenue_taken=Decimal("24.90"))
    assert judged(as_event(event("cancellation")), after_refund) == (Decimal("189.27"), Decimal("169.80"))
    # Revenue is taken back first, the staff's service charge last.
    nearly_all = target(taken=Decimal("190.00"), revenue_taken=Decimal("190.00"))
    last = as_event(event(amount="20.00", lines=[]))
    assert judged(last, nearly_all) == (Decimal("20.00"), Decimal("4.70"))


@pytest.mark.parametrize(("message", "changes", "reason"), [
    (event(), {"cancelled_by": "e1"}, "is already cancelled (event e1)"),
    (event(amount="214.18"), {}, "refund of 214.18 is more than what is left of order"),
    (event(amount="1.00"), {"taken": Decimal("214.17")}, "more than what is left of order"),
    (event(lines=[3]), {}, "refund names line 3, but order"),
    (event("cancellation"), {"taken": Decimal("214.17")}, "was refunded in full: nothing is left to cancel"),
    (event("cancellation", amount="100.00"), {}, "cancellation amount 100.00 is not what is left"),
    (event(created_at=(NOW - timedelta(hours=2)).isoformat()), {}, "is before its order"),
])
def test_an_event_its_order_does_not_allow_is_refused_with_its_reason(message, changes, reason):
    with pytest.raises(EventRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        judged(as_event(message), target(**changes))


# --- The real worker ---------------------------------------------------------------------

READ_EVENTS = """
SELECT event_id::text, kind, order_id::text, store_id, amount, revenue, reason, lines
FROM order_events ORDER BY created_at, kind
"""
READ_REJECTIONS = """
SELECT raw, reason FROM rejected_orders ORDER BY kafka_partition, kafka_offset
"""


@pytest.mark.integration
def test_the_worker_stores_each_event_once_and_rejects_the_rest_with_their_reasons(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    placed = datetime.now(UTC) - timedelta(minutes=10)
    bill = {**dine_in(), "created_at": placed.isoformat()}
    order_id = bill["order_id"]

    def at(minutes: int) -> str:
        return (placed + timedelta(minutes=minutes)).isoformat()

    refund = event(created_at=at(1))
    other = event(created_at=at(2), amount="10.00", lines=[], reason="desconto de cortesia")
    cancellation = event("cancellation", created_at=at(3), reason="cliente foi embora")
    unknown = event(order_id=str(uuid.uuid4()), created_at=at(1))
    conflicting = {**refund, "amount": "20.00"}
    after_cancel = event(created_at=at(4), amount="1.00", lines=[])
    messages = [encoded(bill), encoded(refund), encoded(other), encoded(refund),  # the refund sent twice
                encoded(conflicting), encoded(cancellation), encoded(after_cancel)]
    worker.start()
    topic = worker.env["ORDERS_TOPIC"]
    produce(stack.kafka.bootstrap_servers, topic, [(order_id.encode(), m) for m in messages])
    produce(stack.kafka.bootstrap_servers, topic, [(unknown["order_id"].encode(), encoded(unknown))])

    rejected = wait_until(lambda: (rows := query(database_url, READ_REJECTIONS)) and len(rows) == 3 and rows,
                          message="the three bad events were never rejected")
    reasons = {bytes(raw): reason for raw, reason in rejected}
    assert reasons == {
        encoded(conflicting): f"conflicting duplicate of event {refund['event_id']}: same event_id,"
                              " different content",
        encoded(after_cancel): f"order {order_id} is already cancelled (event {cancellation['event_id']})",
        encoded(unknown): f"no order {unknown['order_id']} is stored: a refund must come after its order"
                          " (key both by the order's store)",
    }
    assert query(database_url, READ_EVENTS) == [
        (refund["event_id"], "refund", order_id, "main", Decimal("24.90"), Decimal("24.90"),
         "prato voltou frio", [2]),
        (other["event_id"], "refund", order_id, "main", Decimal("10.00"), Decimal("10.00"),
         "desconto de cortesia", []),
        (cancellation["event_id"], "cancellation", order_id, "main", Decimal("179.27"), Decimal("159.80"),
         "cliente foi embora", []),
    ]
    dead = consume_all(stack.kafka.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=3)
    kinds = sorted(dict(d.headers)["__connect.errors.exception.class.name"] for d in dead)
    assert kinds == [b"ConflictingDuplicate", b"EventRefused", b"UnknownOrder"]
    status, body = fetch(f"{worker.url}/metrics")
    assert status == 200
    assert "restaurant_order_events_stored_total 3.0" in body.decode()
    assert 'restaurant_rejections_total{kind="UnknownOrder"} 1.0' in body.decode()
