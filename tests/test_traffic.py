"""The simulated traffic looks like a real restaurant's and is reproducible."""

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

from restaurant_app.models import Order
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import REGULAR_CUSTOMERS, OrderGenerator, customer_name
from restaurant_app.validation import parse_order

NOON_IN_SAO_PAULO = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
FOUR_AM_IN_SAO_PAULO = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)


def shape(order: Order) -> tuple:
    """What the seed decides about an order: all but its id and a first-time customer's identity."""
    regular = order.customer_id if order.customer_id <= REGULAR_CUSTOMERS else "first time"
    items = [(i.dish, i.quantity) for i in order.items]
    return order.created_at, regular, order.channel, order.payment_method, items, order.total


def test_the_same_seed_gives_the_same_traffic():
    first = [shape(o) for o in OrderGenerator(seed=42).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    second = [shape(o) for o in OrderGenerator(seed=42).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    other = [shape(o) for o in OrderGenerator(seed=43).orders_for_tick(20, NOON_IN_SAO_PAULO)]
    assert first == second
    assert first != other


def test_order_ids_are_never_the_same_twice_even_with_the_same_seed():
    ids = [o.order_id for seed in (42, 42) for o in OrderGenerator(seed=seed).orders_for_tick(200)]
    assert len(ids) == len(set(ids))


def test_first_time_customers_are_new_even_with_the_same_seed():
    runs = [OrderGenerator(seed=42).orders_for_tick(200, NOON_IN_SAO_PAULO) for _ in range(2)]
    first_time = [{o.customer_id for o in run if o.customer_id > REGULAR_CUSTOMERS} for run in runs]
    assert first_time[0] and first_time[1]
    assert not first_time[0] & first_time[1]


def test_a_customer_id_names_the_same_person_in_every_generator():
    names: dict[int, set[str]] = {}
    for seed in (1, 2):
        generator = OrderGenerator(seed=seed)
        for order in (generator.order() for _ in range(2000)):
            names.setdefault(order.customer_id, set()).add(order.customer_name)
    assert all(len(n) == 1 for n in names.values())
    assert len(names) < 4000, "the two generators shared no customer: the check proved nothing"


def test_a_customer_id_names_the_same_person_in_another_process():
    ids = [1, 2, REGULAR_CUSTOMERS, 123_456_789]
    printed = subprocess.run(
        [sys.executable, "-c", "from restaurant_app.traffic import customer_name as name; "
                               f"print(*(name(i) for i in {ids}), sep='\\n')"],
        env={**os.environ, "PYTHONHASHSEED": "7"}, cwd=PROJECT_ROOT,
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert printed == [customer_name(i) for i in ids]
    assert len(set(printed)) == len(ids)


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


def test_most_orders_come_from_returning_customers_once_the_regulars_have_been_in():
    generator = OrderGenerator(seed=4)
    customers = [generator.order().customer_id for _ in range(12_000)]
    regulars = sum(c <= REGULAR_CUSTOMERS for c in customers[:2000])
    assert 0.55 < regulars / 2000 < 0.65
    returning = 0
    seen = set(customers[:10_000])
    for customer in customers[10_000:]:
        returning += customer in seen
        seen.add(customer)
    assert 0.5 < returning / 2000 < 0.7
