"""Simulated point-of-sale traffic: realistic, and reproducible from a seed."""

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from faker import Faker

from restaurant_app.menu import DESSERTS, DRINKS, MAIN_COURSES, Dish
from restaurant_app.models import Order, OrderItem

# How busy each local hour is against the quietest one: lunch and dinner peaks.
HOURLY_DEMAND = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.6, 2.6,
    4.0, 3.5, 2.0, 1.4, 1.3, 1.5, 2.2, 3.2, 4.0, 3.0, 1.8, 1.2,
)

CHANNEL_WEIGHTS = {"dine_in": 5, "takeaway": 2, "delivery": 3}
PAYMENT_WEIGHTS = {"credit_card": 4, "debit_card": 2, "pix": 5, "cash": 1, "meal_voucher": 2}
RETURNING_CUSTOMER_SHARE = 0.6


class OrderGenerator:
    """Makes orders that look like a real restaurant's day.

    Demand follows lunch and dinner peaks in the restaurant's time zone, a few
    dishes sell far more than the rest, and about 60% of orders come from
    customers who ordered before. The same seed gives the same orders.
    """

    def __init__(self, seed: int | None = None, timezone_name: str = "America/Sao_Paulo"):
        self.random = random.Random(seed)
        self.faker = Faker("pt_BR")
        self.faker.seed_instance(seed)
        self.zone = ZoneInfo(timezone_name)
        self.customers: list[tuple[int, str]] = []

    def demand(self, moment: datetime) -> float:
        """How busy the restaurant is at ``moment``: 1.0 is the quietest hour."""
        return HOURLY_DEMAND[moment.astimezone(self.zone).hour]

    def orders_for_tick(self, base: int, moment: datetime | None = None) -> list[Order]:
        """The orders placed during one tick, about ``base`` scaled by the hour's demand."""
        moment = moment or datetime.now(UTC)
        expected = base * self.demand(moment)
        count = int(expected) + (self.random.random() < expected - int(expected))
        return [self.order(moment) for _ in range(count)]

    def order(self, moment: datetime | None = None) -> Order:
        moment = moment or datetime.now(UTC)
        customer_id, customer_name = self._customer()
        channel = self._weighted(CHANNEL_WEIGHTS)
        items = self._basket(party=1 if channel == "delivery" else self._party_size())
        return Order(
            order_id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            created_at=moment,
            customer_id=customer_id,
            customer_name=customer_name,
            channel=channel,
            payment_method=self._weighted(PAYMENT_WEIGHTS),
            items=items,
            total=sum((item.subtotal for item in items), Decimal(0)),
        )

    def _customer(self) -> tuple[int, str]:
        if self.customers and self.random.random() < RETURNING_CUSTOMER_SHARE:
            # Regulars: earlier customers come back more often than recent ones.
            index = int(len(self.customers) * self.random.random() ** 2)
            return self.customers[index]
        customer = (len(self.customers) + 1, self.faker.name())
        self.customers.append(customer)
        return customer

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
