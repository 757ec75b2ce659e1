"""Simulated point-of-sale traffic: realistic, its shape reproducible from a seed, its ids always new."""

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from faker import Faker

from restaurant_app.menu import DESSERTS, DRINKS, MAIN_COURSES, Dish
from restaurant_app.models import DEFAULT_STORE, ZERO, Order, OrderEvent, OrderItem, Payment, main_method

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


# Whole bills (contract version 2) and what happens to them afterwards, as shares of orders.
CENT = Decimal("0.01")
SERVICE_CHARGE_SHARE = 0.8
"""Of dine-in bills; the charge is 10% of the lines after discounts, rounded half up to the cent."""
SERVICE_RATE = Decimal("0.10")
SERVICE_AS_REVENUE_SHARE = 0.3
LINE_DISCOUNT_SHARE = 0.12
LINE_DISCOUNT_RATES = (Decimal("0.10"), Decimal("0.20"), Decimal("0.50"))
ORDER_DISCOUNT_SHARE = 0.08
ORDER_DISCOUNT = Decimal("10.00")
DELIVERY_FEES = (Decimal("4.90"), Decimal("6.90"), Decimal("8.90"), Decimal("12.90"))
TIP_SHARE = 0.15
"""Of dine-in bills."""
TIPS = (Decimal("2.00"), Decimal("5.00"), Decimal("10.00"))
SPLIT_SHARE = 0.15
CANCELLATION_SHARE = 0.02
REFUND_SHARE = 0.01
CANCELLATION_REASONS = ("cliente desistiu", "pedido lançado em duplicidade", "demora na cozinha")
REFUND_REASONS = ("prato voltou frio", "item errado", "item em falta")


def cents(amount: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return amount.quantize(CENT, rounding=rounding)


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

    def __init__(self, seed: int | None = None, timezone_name: str = "America/Sao_Paulo", stores: int = 1,
                 whole_bills: bool = False):
        """``whole_bills``: version 2 bills (service charge, discounts, delivery fees, tips, split
        payments) and, from ``events_for``, cancellations and refunds; else version 1 orders."""
        self.whole_bills = whole_bills
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
        order = Order(
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
        return self._bill(order) if self.whole_bills else order

    def _bill(self, order: Order) -> Order:
        """``order`` as a version 2 bill: maybe a discounted line and a coupon, the service charge on
        most dine-in bills, the delivery fee, maybe a tip, and sometimes two payments."""
        items = self._discounted(order.items)
        lines = sum((item.net for item in items), ZERO)
        coupon = self.random.random() < ORDER_DISCOUNT_SHARE and lines > 2 * ORDER_DISCOUNT
        discount = ORDER_DISCOUNT if coupon else ZERO
        dine_in = order.channel == "dine_in"
        service = cents((lines - discount) * SERVICE_RATE) \
            if dine_in and self.random.random() < SERVICE_CHARGE_SHARE else ZERO
        delivery = self.random.choice(DELIVERY_FEES) if order.channel == "delivery" else ZERO
        total = lines - discount + service + delivery
        tip = self.random.choice(TIPS) if dine_in and self.random.random() < TIP_SHARE else ZERO
        payments = self._payments(order.payment_method, total + tip)
        return Order(
            schema_version=2, order_id=order.order_id, store_id=order.store_id, created_at=order.created_at,
            customer_id=order.customer_id, customer_name=order.customer_name, channel=order.channel,
            payment_method=main_method(payments), items=items, total=total, discount=discount,
            service_charge=service, service_charge_is_revenue=service > 0 and self.random.random()
            < SERVICE_AS_REVENUE_SHARE, delivery_fee=delivery, tip=tip, payments=payments,
        )

    def _discounted(self, items: list[OrderItem]) -> list[OrderItem]:
        if self.random.random() >= LINE_DISCOUNT_SHARE:
            return items
        chosen = self.random.randrange(len(items))
        rate = self.random.choice(LINE_DISCOUNT_RATES)
        return [OrderItem(dish=i.dish, category=i.category, unit_price=i.unit_price, quantity=i.quantity,
                          discount=cents(i.subtotal * rate) if n == chosen else ZERO)
                for n, i in enumerate(items)]

    def _payments(self, method: str, paid: Decimal) -> tuple[Payment, ...]:
        """One payment of ``paid``, or (sometimes) about half each by two methods."""
        if self.random.random() >= SPLIT_SHARE or paid < 2 * CENT:
            return (Payment(method=method, amount=paid),)
        other = self._weighted({m: w for m, w in PAYMENT_WEIGHTS.items() if m != method})
        half = cents(paid / 2, ROUND_DOWN)
        return (Payment(method=method, amount=paid - half), Payment(method=other, amount=half))

    def events_for(self, orders: list[Order], moment: datetime | None = None) -> list[OrderEvent]:
        """Cancellations (about 2% of orders) and refunds of one line (about 1%) of ``orders``,
        at ``moment`` (their own time by default); none unless ``whole_bills``."""
        if not self.whole_bills:
            return []
        events = []
        for order in orders:
            chance = self.random.random()
            at = max(moment or order.created_at, order.created_at)
            if chance < CANCELLATION_SHARE:
                events.append(self._event("cancellation", order, at, CANCELLATION_REASONS))
            elif chance < CANCELLATION_SHARE + REFUND_SHARE:
                line = self.random.randrange(len(order.items))
                amount = min(order.items[line].net, order.total)
                if amount > 0:
                    events.append(self._event("refund", order, at, REFUND_REASONS, amount=amount,
                                              lines=(line + 1,)))
        return events

    def _event(self, kind: str, order: Order, at: datetime, reasons: tuple[str, ...],
               **fields: object) -> OrderEvent:
        return OrderEvent(kind=kind, event_id=str(uuid.uuid4()), order_id=order.order_id, created_at=at,
                          reason=self.random.choice(reasons), **fields)

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
