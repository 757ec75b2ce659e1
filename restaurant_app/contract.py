"""The order message's JSON Schema, built from the ``Order`` model and the limits ``parse_order`` checks,
and the OpenAPI document of ``POST /api/orders`` around it.

``python -m restaurant_app.contract`` writes them to ``docs/order.schema.json`` and
``docs/openapi.json``; a test keeps those files equal to what this module builds. The schema
says what a message must look like; the rules it cannot say (totals, clock skew, characters)
are in ``docs/ORDER_CONTRACT.md``.
"""

import json
import sys
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
from restaurant_app.web.endpoint import CSV_NUMBERS
from restaurant_app.web.language import LANGUAGES

SCHEMA_PATH = PROJECT_ROOT / "docs" / "order.schema.json"
OPENAPI_PATH = PROJECT_ROOT / "docs" / "openapi.json"
MAX_BATCH_ORDERS = 500
"""The most orders one ``POST /api/orders`` takes."""
MAX_BODY_BYTES = 2 * 1024 * 1024
"""The largest body ``POST /api/orders`` reads."""
RETRY_AFTER_SECONDS = 5
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


ORDER_REF = {"$ref": "#/components/schemas/Order"}
ORDER_ID = {"type": "string", "format": "uuid"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _request_body() -> dict[str, Any]:
    batch = {"type": "array", "items": ORDER_REF, "minItems": 1, "maxItems": MAX_BATCH_ORDERS}
    return {"required": True, "content": _json({"oneOf": [ORDER_REF, batch]})}


def _accepted() -> dict[str, Any]:
    one = {"type": "object", "required": ["order_id"], "properties": {"order_id": ORDER_ID}}
    many = {"type": "object", "required": ["accepted", "order_ids"],
            "properties": {"accepted": {"type": "integer"},
                           "order_ids": {"type": "array", "items": ORDER_ID}}}
    return {"description": "Kafka has the order(s).", "content": _json({"oneOf": [one, many]})}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    properties = {"error": {"type": "string", "maxLength": 200}, **extra}
    return {"description": description,
            "content": _json({"type": "object", "required": ["error"], "properties": properties})}


def _responses() -> dict[str, Any]:
    rejected = {"type": "array", "items": {
        "type": "object", "required": ["index", "error"],
        "properties": {"index": {"type": "integer", "minimum": 0}, "error": {"type": "string"}}}}
    retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}
    return {
        "202": _accepted(),
        "400": _error("Not an acceptable order; for a batch, every bad order's index and reason,"
                      " and none of the batch was taken.", rejected=rejected),
        "401": _error("Missing or wrong token."),
        "403": _error("No ORDERS_API_TOKEN is set and the server listens beyond loopback."),
        "413": _error(f"Over {MAX_BODY_BYTES} bytes or {MAX_BATCH_ORDERS} orders."),
        "503": {**_error("Kafka did not acknowledge in time: send the same request again."),
                "headers": retry},
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


STORE_PARAMETER = _query(
    "store", {"type": "string", "pattern": f"^(|{STORE_ID.pattern})$"},
    f"A store's id (1 to {MAX_STORE_ID_LENGTH} lowercase letters, digits, '-' or '_') with reports"
    " (/api/dashboard/stores lists them); absent or empty: the whole chain. An unknown store is a 400.")
LANG_PARAMETER = _query("lang", {"type": "string", "enum": list(LANGUAGES)},
                        "The language of the sentences; absent: DASHBOARD_LANGUAGE (or the browser's).")
NUMBERS_PARAMETER = _query("numbers", {"type": "string", "enum": list(CSV_NUMBERS)},
                           "br: 1234,56 and ';' between fields (the default); intl: 1234.56 and ','.")
MOMENT = {"type": "string", "format": "date-time", "maxLength": 64, "examples": ["2026-11-29T14:00:00-03:00"]}
RANGE_PARAMETERS = [
    _query("granularity", {"type": "string", "enum": ["minute", "hour", "day"]}, "Absent: minute."),
    _query("from", MOMENT, "The first window's start (ISO 8601; without an offset, the restaurant's clock).",
           required=True),
    _query("to", MOMENT, "Windows starting before this moment.", required=True),
]
HISTORY_PARAMETERS = [
    _query("period", {"type": "string", "enum": ["day", "week", "month"]}, "Absent: day."),
    _query("date", {"type": "string", "format": "date", "maxLength": 64, "examples": ["2026-11-29"]},
           "A day of the period (YYYY-MM-DD); absent: today."),
]


def _counted(name: str, default: int, low: int, high: int) -> dict[str, Any]:
    return _query(name, {"type": "integer", "minimum": low, "maximum": high}, f"Absent: {default}.")


def _reading(summary: str, parameters: list[dict[str, Any]], media: str = "application/json",
             unavailable: str = "PostgreSQL is unavailable.") -> dict[str, Any]:
    """A GET of the reports or the dashboard: 200, 400 with the reason, 503 while PostgreSQL is away."""
    body = {"type": "object"} if media == "application/json" else {"type": "string"}
    return {"get": {"summary": summary, "parameters": parameters, "responses": {
        "200": {"description": summary, "content": {media: {"schema": body}}},
        "400": _error("A bad parameter (unknown, repeated, out of range, an unknown store): the reason."),
        "503": _error(unavailable),
    }}}


def reading_paths() -> dict[str, Any]:
    """The reports' and the dashboard's GET endpoints, with their parameters."""
    return {
        "/reports": _reading("Reports and insights of a range", [*RANGE_PARAMETERS, LANG_PARAMETER,
                                                                  STORE_PARAMETER]),
        "/reports.csv": _reading("The reports of a range as CSV", [*RANGE_PARAMETERS, NUMBERS_PARAMETER,
                                                                     STORE_PARAMETER], "text/csv"),
        "/reports/latest": _reading("The newest reports, insights and the last run",
                                    [LANG_PARAMETER, STORE_PARAMETER]),
        "/api/dashboard/summary": _reading("Today so far against yesterday", [STORE_PARAMETER]),
        "/api/dashboard/minutes": _reading("Revenue and orders per minute",
                                           [_counted("hours", 2, 1, 24), STORE_PARAMETER]),
        "/api/dashboard/dishes": _reading("The top dishes of the hour and the day",
                                          [_counted("limit", 8, 1, 50), STORE_PARAMETER]),
        "/api/dashboard/insights": _reading("The latest insights",
                                            [_counted("limit", 6, 1, 50), LANG_PARAMETER, STORE_PARAMETER]),
        "/api/dashboard/stores": _reading("The stores with reports", []),
        "/api/dashboard/history": _reading("A day, week or month with its comparisons",
                                           [*HISTORY_PARAMETERS, LANG_PARAMETER, STORE_PARAMETER]),
        "/api/dashboard/history.csv": _reading(
            "The history's days as CSV", [*HISTORY_PARAMETERS, LANG_PARAMETER, NUMBERS_PARAMETER,
                                          STORE_PARAMETER], "text/csv"),
        "/api/dashboard/rejections": _reading("The messages refused lately",
                                              [_counted("hours", 1, 1, 168), _counted("limit", 20, 1, 200)]),
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``POST /api/orders`` (the order schema as its body) and of the
    reports' and the dashboard's GET endpoints."""
    # The order schema's own definitions ($defs) become components, where its references can reach them.
    schema = json.loads(json.dumps(order_schema()).replace('"#/$defs/', '"#/components/schemas/'))
    order = {key: value for key, value in schema.items() if key not in ("$schema", "$id", "$defs")}
    post = {
        "summary": "Send one order, or a batch of orders",
        "description": (
            f"One order (an object) or a batch (an array of 1 to {MAX_BATCH_ORDERS}), at most"
            f" {MAX_BODY_BYTES} bytes. Each is checked as on Kafka; 202 once Kafka has acknowledged"
            " every order. A batch is all or nothing. Sending the same order again is safe."),
        "security": [{"token": []}],
        "requestBody": _request_body(),
        "responses": _responses(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Restaurant sales: orders from points of sale, reports and the dashboard",
                 "version": str(SCHEMA_VERSION),
                 "description": "The order contract is docs/ORDER_CONTRACT.md. Money is an exact decimal"
                                " string; moments are ISO 8601 on the restaurant's clock."},
        "paths": {"/api/orders": {"post": post}, **reading_paths()},
        "components": {
            "schemas": {"Order": order, **schema["$defs"]},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "ORDERS_API_TOKEN"}},
        },
    }


def as_text(document: dict[str, Any]) -> str:
    """A document as the committed files hold it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_text() -> str:
    """The schema as the committed file holds it."""
    return as_text(order_schema())


def main() -> None:
    for path, document in ((SCHEMA_PATH, order_schema()), (OPENAPI_PATH, openapi())):
        path.write_text(as_text(document), encoding="utf-8")
        print(f"Wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
