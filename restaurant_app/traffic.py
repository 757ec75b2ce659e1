"""Simulated point-of-sale traffic: realistic, its shape reproducible from a seed, its ids always new."""

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from faker import Faker

from restaurant_app.menu import DESSERTS, DRINKS, MAIN_COURSES, Dish
from restaurant_app.models import DEFAULT_STORE, Order, OrderItem

# How busy each local hour is against the quietest one: lunch and dinner peaks.
HOURLY_DEMAND = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.6, 2.6,
    4.0, 3.5, 2.0, 1.4, 1.3, 1.5, 2.2, 3.2, 4.0, 3.0, 1.8, 1.2,
)

CHANNEL_WEIGHTS = {"dine_in": 5, "takeaway": 2, "delivery": 3}
PAYMENT_WEIGHTS = {"credit_card": 4, "debit_card": 2, "pix": 5, "cash": 1, "meal_voucher": 2}
REGULAR_SHARE = 0.6
REGULAR_CUSTOMERS = 2_000
"""Customer ids 1 to 2,000 are the regulars; every larger id is a first-time customer."""
LAST_CUSTOMER_ID = 2**31 - 1
"""First-time customers' ids are drawn up to here, so two runs practically never pick the same one."""


@dataclass(frozen=True)
class Store:
    """A simulated store: its id, its size against the quietest hour's base, and how many hours
    its day runs ahead of (or behind) the restaurant's clock."""

    store_id: str
    size: float = 1.0
    shift_hours: int = 0


SINGLE_STORE = Store(DEFAULT_STORE)


def chain(stores: int) -> tuple[Store, ...]:
    """The simulated stores: the single store ``main``, or ``loja-01`` to ``loja-NN``.

    Each store of a chain has a size (0.5 to 2 times the base) and a peak one hour early, on
    time or one hour late, a pure function of its number, so store N is the same in every process.
    """
    if stores == 1:
        return (SINGLE_STORE,)
    profiles = (random.Random(number) for number in range(1, stores + 1))
    return tuple(Store(f"loja-{number:02d}", 0.5 + 1.5 * profile.random(), profile.choice((-1, 0, 1)))
                 for number, profile in enumerate(profiles, start=1))


@cache
def _name_source() -> Faker:
    return Faker("pt_BR")


@lru_cache(maxsize=REGULAR_CUSTOMERS)
def customer_name(customer_id: int) -> str:
    """The name of customer ``customer_id``: a pure function of the id, the same in every process.

    The population is Faker pt_BR seeded with the id, so every worker, restart and generator
    agrees on who customer N is without asking a database (for as long as the pinned Faker
    version does not change its pt_BR names).
    """
    source = _name_source()
    source.seed_instance(customer_id)
    return source.name()


class OrderGenerator:
    """Makes orders that look like a real restaurant's day.

    Demand follows lunch and dinner peaks in the restaurant's time zone, a few dishes sell far
    more than the rest, and about 60% of orders come from the 2,000 regulars, earlier ids more
    often; the rest from first-time customers. Once most regulars have been in (about 10,000
    orders), about 60% of orders are from customers who ordered before, across restarts too.

    The seed fixes the traffic's shape: how many orders each tick, whether each comes from a
    regular and which one, channel, payment and basket. What must be new never comes from the
    seed: order ids are uuid4 and first-time customers' ids are drawn from ``os.urandom``, so a
    restart or a new leader with the same GENERATOR_SEED places new orders and meets new people.
    """

    def __init__(self, seed: int | None = None, timezone_name: str = "America/Sao_Paulo", stores: int = 1):
        self.random = random.Random(seed)
        self.fresh = random.SystemRandom()
        self.zone = ZoneInfo(timezone_name)
        self.stores = chain(stores)

    def demand(self, moment: datetime, store: Store = SINGLE_STORE) -> float:
        """How busy ``store`` is at ``moment``: 1.0 is the single store's quietest hour."""
        local = moment.astimezone(self.zone) + timedelta(hours=store.shift_hours)
        return store.size * HOURLY_DEMAND[local.hour]

    def orders_for_tick(self, base: int, moment: datetime | None = None) -> list[Order]:
        """The orders placed during one tick in every store, about ``base`` scaled by each one's demand."""
        moment = moment or datetime.now(UTC)
        orders = []
        for store in self.stores:
            expected = base * self.demand(moment, store)
            count = int(expected) + (self.random.random() < expected - int(expected))
            orders += [self.order(moment, store.store_id) for _ in range(count)]
        return orders

    def order(self, moment: datetime | None = None, store_id: str = DEFAULT_STORE) -> Order:
        moment = moment or datetime.now(UTC)
        customer_id = self._customer_id()
        channel = self._weighted(CHANNEL_WEIGHTS)
        items = self._basket(party=1 if channel == "delivery" else self._party_size())
        return Order(
            order_id=str(uuid.uuid4()),
            store_id=store_id,
            created_at=moment,
            customer_id=customer_id,
            customer_name=customer_name(customer_id),
            channel=channel,
            payment_method=self._weighted(PAYMENT_WEIGHTS),
            items=items,
            total=sum((item.subtotal for item in items), Decimal(0)),
        )

    def _customer_id(self) -> int:
        """A regular (earlier ids come back more often than later ones), else a first-time customer."""
        if self.random.random() < REGULAR_SHARE:
            return 1 + int(REGULAR_CUSTOMERS * self.random.random() ** 2)
        return self.fresh.randint(REGULAR_CUSTOMERS + 1, LAST_CUSTOMER_ID)

    def _party_size(self) -> int:
        return self.random.choices((1, 2, 3, 4, 6), weights=(3, 5, 2, 2, 1))[0]

    def _basket(self, party: int) -> list[OrderItem]:
        chosen: dict[Dish, int] = {}
        for _ in range(party):
            for course, chance in ((MAIN_COURSES, 1.0), (DRINKS, 0.7), (DESSERTS, 0.3)):
                if self.random.random() < chance:
                    dish = self.random.choices(course, weights=[d.popularity for d in course])[0]
                    chosen[dish] = chosen.get(dish, 0) + 1
        return [
            OrderItem(dish=d.name, category=d.category, unit_price=d.price, quantity=q)
            for d, q in chosen.items()
        ]

    def _weighted(self, weights: dict[str, int]) -> str:
        return self.random.choices(list(weights), weights=list(weights.values()))[0]
