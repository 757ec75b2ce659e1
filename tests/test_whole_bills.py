"""The simulator's whole bills: the realistic mix of version 2 (service charge on most dine-in
bills, discounts, delivery fees, tips, split payments) and about 2% cancellations and 1% refunds."""

from datetime import UTC, datetime, timedelta

from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import fast_path_order, parse_message

NOW = datetime.now(UTC)
ORDERS = 4_000


def test_every_simulated_bill_and_event_fits_the_contract_and_takes_the_fast_path():
    generator = OrderGenerator(seed=3, whole_bills=True)
    orders = [generator.order(NOW) for _ in range(500)]
    for order in orders:
        assert order.schema_version == 2
        assert fast_path_order(order.dumps(), NOW, timedelta(minutes=5)) == order
    for event in generator.events_for(orders):
        assert parse_message(event.dumps(), now=NOW) == event


def test_the_simulated_mix_is_a_restaurants():
    generator = OrderGenerator(seed=5, whole_bills=True)
    orders = [generator.order(NOW) for _ in range(ORDERS)]
    dine_in = [o for o in orders if o.channel == "dine_in"]
    delivery = [o for o in orders if o.channel == "delivery"]
    assert 0.7 < sum(o.service_charge > 0 for o in dine_in) / len(dine_in) < 0.9
    assert all(o.delivery_fee > 0 for o in delivery)
    assert not any(o.delivery_fee for o in orders if o.channel != "delivery")
    assert not any(o.service_charge for o in orders if o.channel != "dine_in")
    shares = {
        "discounted": sum(o.discount > 0 or any(i.discount for i in o.items) for o in orders) / ORDERS,
        "split": sum(len(o.payments) > 1 for o in orders) / ORDERS,
        "tipped": sum(o.tip > 0 for o in orders) / ORDERS,
    }
    assert 0.1 < shares["discounted"] < 0.3 and 0.1 < shares["split"] < 0.2 and 0.03 < shares["tipped"] < 0.15
    events = generator.events_for(orders)
    cancelled = sum(e.kind == "cancellation" for e in events) / ORDERS
    refunded = sum(e.kind == "refund" for e in events) / ORDERS
    assert 0.01 < cancelled < 0.03 and 0.004 < refunded < 0.02
    assert len({e.order_id for e in events}) == len(events)  # at most one event an order


def test_plain_orders_stay_version_1_and_have_no_events():
    generator = OrderGenerator(seed=5)
    orders = [generator.order(NOW) for _ in range(200)]
    assert {o.schema_version for o in orders} == {1}
    assert generator.events_for(orders) == []
