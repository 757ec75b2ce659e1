"""The order message's JSON Schema, built from the ``Order`` model and the limits ``parse_order`` checks.

``python -m restaurant_app.contract`` writes it to ``docs/order.schema.json``; a test keeps that
file equal to what this module builds. The schema says what a message must look like; the
rules it cannot say (totals, clock skew, characters) are in ``docs/ORDER_CONTRACT.md``.
"""

import json
import sys
from pathlib import Path
from typing import Any

from restaurant_app.models import (
    CHANNELS,
    DEFAULT_STORE,
    PAYMENT_METHODS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
)
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.validation import (
    AMOUNT,
    MAX_CUSTOMER_ID,
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_STORE_ID_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TOTAL,
    MAX_UNIT_PRICE,
    NOT_AN_ORDER_ID,
    STORE_ID,
    TIMESTAMP,
    UUID_TEXT,
)

SCHEMA_PATH = PROJECT_ROOT / "docs" / "order.schema.json"
SCHEMA_ID = "https://restaurant-sales.example/schemas/order/v1.json"


def _whole(pattern: str) -> str:
    """A Python ``fullmatch`` pattern as an ECMA-262 one anchored at both ends, as JSON Schema reads it."""
    return f"^(?:{pattern})$"


# The offset is optional in TIMESTAMP only so that its absence gets a reason of its own.
TIMESTAMP_WITH_OFFSET = TIMESTAMP.pattern.replace("(?P<offset>", "(").removesuffix("?")


def _text(description: str, *, nullable: bool = False) -> dict[str, Any]:
    kind: Any = ["string", "null"] if nullable else "string"
    return {"type": kind, "minLength": 1, "maxLength": MAX_TEXT_LENGTH, "description": description}


def _amount(description: str, limit: Any) -> dict[str, Any]:
    return {
        "description": f"{description} In BRL, at most 2 decimal places, more than 0 and at most {limit}.",
        "oneOf": [
            {"type": "string", "pattern": _whole(AMOUNT.pattern), "examples": ["24.90"]},
            {"type": "number", "exclusiveMinimum": 0, "maximum": float(limit)},
        ],
    }


def order_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an order message of the current version."""
    not_an_order = "|".join(sorted(uuid.replace("f", "[fF]") for uuid in NOT_AN_ORDER_ID))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Order",
        "description": (
            f"One restaurant order, version {SCHEMA_VERSION} of the contract (docs/ORDER_CONTRACT.md). "
            "An optional field may be left out or be null. Fields not named here are ignored."
        ),
        "type": "object",
        "required": ["order_id", "created_at", "channel", "payment_method", "items", "total"],
        "properties": {
            "schema_version": {
                "enum": [*SCHEMA_VERSIONS, None], "default": 1,
                "description": "The contract's version; left out or null: version 1.",
            },
            "order_id": {
                "type": "string", "pattern": _whole(UUID_TEXT.pattern),
                "not": {"pattern": _whole(not_an_order)},
                "description": ("The order's idempotency key: a UUID in its 36-character form,"
                                " neither nil nor max."),
            },
            "store_id": {
                "type": ["string", "null"], "pattern": _whole(STORE_ID.pattern),
                "maxLength": MAX_STORE_ID_LENGTH, "default": DEFAULT_STORE,
                "description": ("The store of a chain; left out or null: the single store,"
                                f" {DEFAULT_STORE!r}."),
            },
            "created_at": {
                "type": "string", "format": "date-time", "pattern": _whole(TIMESTAMP_WITH_OFFSET),
                "description": ("When the order was placed: ISO 8601 with seconds and an offset"
                                " (Z or ±HH:MM)."),
            },
            "customer_id": {
                "type": ["integer", "null"], "minimum": 1, "maximum": MAX_CUSTOMER_ID,
                "description": ("The customer's number at the restaurant; left out or null:"
                                " an anonymous order."),
            },
            "customer_name": _text("The customer's name, if known.", nullable=True),
            "channel": {"enum": list(CHANNELS), "description": "Where the order was placed."},
            "payment_method": {"enum": list(PAYMENT_METHODS), "description": "How it was paid."},
            "items": {
                "type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
                "items": {"$ref": "#/$defs/item"}, "description": "The order's lines, in order.",
            },
            "total": _amount("The order's total: the sum of unit_price times quantity over its items.",
                             MAX_TOTAL),
        },
        "$defs": {
            "item": {
                "type": "object",
                "required": ["dish", "category", "unit_price", "quantity"],
                "properties": {
                    "dish": _text("The dish's name."),
                    "category": _text("The dish's category, such as 'prato principal', 'bebida'"
                                      " or 'sobremesa'."),
                    "unit_price": _amount("The price of one.", MAX_UNIT_PRICE),
                    "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY,
                                 "description": "How many."},
                },
            },
        },
    }


def schema_text() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(order_schema(), indent=2, ensure_ascii=False) + "\n"


def main(path: Path = SCHEMA_PATH) -> None:
    path.write_text(schema_text(), encoding="utf-8")
    print(f"Wrote the order schema to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
