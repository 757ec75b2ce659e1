"""The history's periods, parameters and CSV, without any service."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from restaurant_app.web.endpoint import BadParameter
from restaurant_app.web.history import DayParameter, as_csv, period_of, previous_of


@pytest.mark.parametrize(("period", "day", "first", "after"), [
    ("day", date(2026, 12, 31), date(2026, 12, 31), date(2027, 1, 1)),
    ("week", date(2026, 12, 3), date(2026, 11, 30), date(2026, 12, 7)),   # Thursday: from Monday
    ("week", date(2026, 11, 30), date(2026, 11, 30), date(2026, 12, 7)),  # a Monday starts its week
    ("week", date(2026, 12, 6), date(2026, 11, 30), date(2026, 12, 7)),   # a Sunday ends it
    ("month", date(2026, 12, 15), date(2026, 12, 1), date(2027, 1, 1)),
    ("month", date(2028, 2, 29), date(2028, 2, 1), date(2028, 3, 1)),
])
def test_periods_follow_the_calendar(period: str, day: date, first: date, after: date):
    assert period_of(period, day) == (first, after)


def test_the_period_before():
    assert previous_of("day", date(2026, 12, 1)) == date(2026, 11, 30)
    assert period_of("week", previous_of("week", date(2026, 12, 3)))[0] == date(2026, 11, 23)
    assert period_of("month", previous_of("month", date(2026, 1, 15)))[0] == date(2025, 12, 1)


@pytest.mark.parametrize(("raw", "reason"), [
    ("yesterday", "'date' must be a day such as 2026-11-29"),
    ("2026-13-01", "'date' must be a day such as 2026-11-29"),
    ("1999-12-31", "'date' must be 2000-01-01 or later"),
])
def test_a_bad_day_is_refused_with_the_reason(raw: str, reason: str):
    with pytest.raises(BadParameter, match=reason):
        DayParameter().read("date", raw)


BODY = {
    "lang": "pt-BR",
    "days": [
        {"day": datetime(2026, 12, 1, 3, tzinfo=UTC), "orders": 2, "items": 5, "revenue": Decimal("1234.50"),
         "avg_ticket": Decimal("617.25"), "unique_customers": 2},
        {"day": datetime(2026, 12, 2, 3, tzinfo=UTC), "orders": 1, "items": 1, "revenue": Decimal("10.00"),
         "avg_ticket": Decimal("10.00"), "unique_customers": 1},
    ],
    "current": {"orders": 3, "items": 6, "revenue": Decimal("1244.50"), "avg_ticket": Decimal("414.83"),
                "unique_customers": 2},
}


def test_the_csv_in_brazilian_numbers():
    assert as_csv(BODY, "br").splitlines() == [
        "Dia;Pedidos;Itens vendidos;Faturamento (R$);Ticket médio (R$);Clientes únicos",
        "01/12/2026;2;5;1234,50;617,25;2",
        "02/12/2026;1;1;10,00;10,00;1",
        "Total;3;6;1244,50;414,83;2",
    ]


def test_the_csv_in_international_numbers_and_english():
    assert as_csv({**BODY, "lang": "en"}, "intl").splitlines() == [
        "Day,Orders,Items sold,Revenue (R$),Average ticket (R$),Unique customers",
        "01/12/2026,2,5,1234.50,617.25,2",
        "02/12/2026,1,1,10.00,10.00,1",
        "Total,3,6,1244.50,414.83,2",
    ]
