"""The order message's JSON Schema, built from the ``Order`` model and the limits ``parse_order`` checks,
and the OpenAPI document of ``POST /api/orders`` around it.

``python -m restaurant_app.contract`` writes them to ``docs/order.schema.json`` (version 1),
``docs/order.v2.schema.json`` and ``docs/openapi.json``; a test keeps those files equal to what
this module builds. The schema says what a message must look like; the rules it cannot say
(totals, payments, clock skew, characters) are in ``docs/ORDER_CONTRACT.md``.
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
    MAX_CHARGE,
    MAX_CUSTOMER_ID,
    MAX_ITEMS,
    MAX_PAYMENTS,
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
SCHEMA_PATHS = {1: SCHEMA_PATH, 2: PROJECT_ROOT / "docs" / "order.v2.schema.json"}
"""Each version's schema file."""
OPENAPI_PATH = PROJECT_ROOT / "docs" / "openapi.json"
MAX_BATCH_ORDERS = 500
"""The most orders one ``POST /api/orders`` takes."""
MAX_BODY_BYTES = 2 * 1024 * 1024
"""The largest body ``POST /api/orders`` reads."""
RETRY_AFTER_SECONDS = 5
SCHEMA_ID = "https://restaurant-sales.example/schemas/order/v{version}.json"


def _whole(pattern: str) -> str:
    """A Python ``fullmatch`` pattern as an ECMA-262 one anchored at both ends, as JSON Schema reads it."""
    return f"^(?:{pattern})$"


# The offset is optional in TIMESTAMP only so that its absence gets a reason of its own.
TIMESTAMP_WITH_OFFSET = TIMESTAMP.pattern.replace("(?P<offset>", "(").removesuffix("?")


def _text(description: str, *, nullable: bool = False) -> dict[str, Any]:
    kind: Any = ["string", "null"] if nullable else "string"
    return {"type": kind, "minLength": 1, "maxLength": MAX_TEXT_LENGTH, "description": description}


def _amount(description: str, limit: Any, *, zero: bool = False) -> dict[str, Any]:
    if zero:
        least, number = "0 or more", {"minimum": 0}
        described = f"{description} In BRL, at most 2 decimal places, {least} and at most {limit};"
        description = described + " left out or null: 0."
        kinds: Any = ["string", "number", "null"]
    else:
        least, number = "more than 0", {"exclusiveMinimum": 0}
        description = f"{description} In BRL, at most 2 decimal places, {least} and at most {limit}."
        kinds = None
    amount = {
        "description": description,
        "oneOf": [
            {"type": "string", "pattern": _whole(AMOUNT.pattern), "examples": ["24.90"]},
            {"type": "number", **number, "maximum": float(limit)},
            *([{"type": "null"}] if zero else []),
        ],
    }
    return amount if kinds is None else {**amount, "default": "0.00"}


def _version_field(version: int) -> dict[str, Any]:
    if version == 1:
        return {"enum": [1, None], "default": 1,
                "description": "The contract's version; left out or null: version 1."}
    return {"const": version, "description": f"The contract's version: {version}."}


def _v2_fields() -> dict[str, Any]:
    payment = {
        "type": "object", "required": ["method", "amount"],
        "properties": {"method": {"enum": list(PAYMENT_METHODS), "description": "How it was paid."},
                       "amount": _amount("How much this payment paid.", MAX_CHARGE)},
    }
    return {
        "discount": _amount("Taken off the whole order, after the lines' own discounts.", MAX_CHARGE,
                            zero=True),
        "service_charge": _amount("The service charge (taxa de serviço, couvert) added to the bill.",
                                  MAX_CHARGE, zero=True),
        "service_charge_is_revenue": {
            "type": ["boolean", "null"], "default": False,
            "description": ("Whether the service charge is the restaurant's revenue (true) or passed"
                            " on to the staff (false); left out or null: false."),
        },
        "delivery_fee": _amount("The delivery fee added to the bill.", MAX_CHARGE, zero=True),
        "tip": _amount("A tip paid beyond the total (not part of it).", MAX_CHARGE, zero=True),
        "payments": {
            "type": "array", "minItems": 1, "maxItems": MAX_PAYMENTS, "items": payment,
            "description": ("How the bill was paid: each payment's method and amount;"
                            " they add up to total + tip."),
        },
    }


TOTALS = {
    1: "The order's total: the sum of unit_price times quantity over its items.",
    2: ("The order's total: the items' unit_price times quantity, less their discounts, less discount,"
        " plus service_charge and delivery_fee (the tip is not in it)."),
}


def order_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an order message of ``version``."""
    not_an_order = "|".join(sorted(uuid.replace("f", "[fF]") for uuid in NOT_AN_ORDER_ID))
    required = ["order_id", "created_at", "channel", "payment_method", "items", "total"]
    if version >= 2:
        required = ["schema_version", *(name for name in required if name != "payment_method"), "payments"]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(version=version),
        "title": "Order" if version == 1 else f"Order (version {version})",
        "description": (
            f"One restaurant order, version {version} of the contract (docs/ORDER_CONTRACT.md). "
            "An optional field may be left out or be null. Fields not named here are ignored."
        ),
        "type": "object",
        "required": required,
        "properties": {
            "schema_version": _version_field(version),
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
            "total": _amount(TOTALS[version], MAX_TOTAL),
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
    if version >= 2:
        del schema["properties"]["payment_method"]
        schema["properties"].update(_v2_fields())
        schema["$defs"]["item"]["properties"]["discount"] = _amount(
            "Taken off this line, at most its unit_price times quantity.", MAX_CHARGE, zero=True)
    return schema


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
    f"A store's id (1 to {MAX_STORE_ID_LENGTH} lowercase letters, digits, '-' or '_') with orders stored"
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
        "/api/dashboard/minute": _reading("The minute under way, provisional", [STORE_PARAMETER]),
        "/api/dashboard/dishes": _reading("The top dishes of the hour and the day",
                                          [_counted("limit", 8, 1, 50), STORE_PARAMETER]),
        "/api/dashboard/insights": _reading("The latest insights",
                                            [_counted("limit", 6, 1, 50), LANG_PARAMETER, STORE_PARAMETER]),
        "/api/dashboard/stores": _reading("The stores with orders stored", []),
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
    versions = {name: schema for version in SCHEMA_VERSIONS for name, schema in _components(version).items()}
    order = {"description": "An order of any version the workers read (docs/ORDER_CONTRACT.md).",
             "oneOf": [{"$ref": f"#/components/schemas/OrderV{version}"} for version in SCHEMA_VERSIONS]}
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
            "schemas": {"Order": order, **versions},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "ORDERS_API_TOKEN"}},
        },
    }


def _components(version: int) -> dict[str, Any]:
    """A version's schema as OpenAPI components ``OrderVn`` and ``ItemVn`` (no ``$defs`` in OpenAPI)."""
    schema = order_schema(version)
    item = schema.pop("$defs")["item"]
    text = json.dumps({k: v for k, v in schema.items() if k not in ("$schema", "$id")})
    order = json.loads(text.replace('"#/$defs/item"', f'"#/components/schemas/ItemV{version}"'))
    return {f"OrderV{version}": order, f"ItemV{version}": item}


def as_text(document: dict[str, Any]) -> str:
    """A document as the committed files hold it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_text(version: int = SCHEMA_VERSION) -> str:
    """A version's schema as the committed file holds it."""
    return as_text(order_schema(version))


def main() -> None:
    documents = [(SCHEMA_PATHS[version], order_schema(version)) for version in SCHEMA_VERSIONS]
    for path, document in (*documents, (OPENAPI_PATH, openapi())):
        path.write_text(as_text(document), encoding="utf-8")
        print(f"Wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
