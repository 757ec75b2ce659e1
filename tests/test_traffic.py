"""The simulated traffic looks like a real restaurant's and is reproducible."""

from collections import Counter
from datetime import UTC, datetime

from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import parse_order

NOON_IN_SAO_PAULO = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
FOUR_AM_IN_SAO_PAULO = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)


def test_the_same_seed_gives_the_same_orders():
    first = [o.dumps() for o in OrderGenerator(seed=42).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    second = [o.dumps() for o in OrderGenerator(seed=42).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    other = [o.dumps() for o in OrderGenerator(seed=43).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    assert first == second
    assert first != other


def test_every_generated_order_passes_validation():
    generator = OrderGenerator(seed=1)
    for _ in range(500):
        order = generator.order()
        assert parse_order(order.dumps()).total == order.total


def test_lunch_is_busier_than_the_small_hours():
    generator = OrderGenerator(seed=2)
    lunch = sum(len(generator.orders_for_tick(10, NOON_IN_SAO_PAULO)) for _ in range(50))
    night = sum(len(generator.orders_for_tick(10, FOUR_AM_IN_SAO_PAULO)) for _ in range(50))
    assert lunch > 3 * night
    assert night == 500


def test_some_dishes_sell_far_more_than_others():
    generator = OrderGenerator(seed=3)
    sold = Counter()
    for _ in range(2000):
        for item in generator.order().items:
            sold[item.dish] += item.quantity
    assert sold["Picanha na Chapa"] > 5 * sold["Salada Caesar"]


def test_most_orders_come_from_returning_customers():
    generator = OrderGenerator(seed=4)
    customers = [generator.order().customer_id for _ in range(2000)]
    repeat_orders = len(customers) - len(set(customers))
    assert 0.5 < repeat_orders / len(customers) < 0.7
