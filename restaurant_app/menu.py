"""The menu of the simulated Brazilian restaurant, prices in BRL."""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Dish:
    name: str
    category: str
    price: Decimal
    popularity: float
    """Relative weight: how often this dish is chosen against the others of its course."""


MAIN_COURSES = (
    Dish("Picanha na Chapa", "prato principal", Decimal("89.90"), 9.0),
    Dish("Pizza Margherita", "prato principal", Decimal("54.90"), 8.0),
    Dish("Hambúrguer Artesanal", "prato principal", Decimal("42.90"), 7.0),
    Dish("Frango à Parmegiana", "prato principal", Decimal("49.90"), 5.0),
    Dish("Lasanha Bolonhesa", "prato principal", Decimal("46.90"), 4.0),
    Dish("Sushi Combo", "prato principal", Decimal("79.90"), 3.5),
    Dish("Massa Carbonara", "prato principal", Decimal("52.90"), 3.0),
    Dish("Salmão Grelhado", "prato principal", Decimal("84.90"), 2.0),
    Dish("Risotto de Camarão", "prato principal", Decimal("94.90"), 1.5),
    Dish("Salada Caesar", "prato principal", Decimal("36.90"), 1.0),
)

DRINKS = (
    Dish("Caipirinha", "bebida", Decimal("24.90"), 5.0),
    Dish("Suco de Laranja", "bebida", Decimal("12.90"), 4.0),
    Dish("Refrigerante Lata", "bebida", Decimal("7.90"), 6.0),
    Dish("Água com Gás", "bebida", Decimal("6.50"), 2.0),
    Dish("Chope Pilsen", "bebida", Decimal("14.90"), 4.0),
)

DESSERTS = (
    Dish("Pudim de Leite", "sobremesa", Decimal("16.90"), 5.0),
    Dish("Petit Gâteau", "sobremesa", Decimal("29.90"), 3.0),
    Dish("Brigadeiro Gourmet", "sobremesa", Decimal("9.90"), 4.0),
    Dish("Mousse de Maracujá", "sobremesa", Decimal("14.90"), 2.0),
)

MENU = MAIN_COURSES + DRINKS + DESSERTS
