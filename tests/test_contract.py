"""The published order contract (docs/ORDER_CONTRACT.md, docs/order.schema.json) holds for the code.

The schema is built from the model and the limits ``parse_order`` checks; these tests keep the
committed file equal to it, check that every order the code writes or accepts fits it, that the
page's examples are accepted, and that a message of an unknown version is rejected with its
reason, by the real worker too.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.contract import SCHEMA_PATH, SCHEMA_PATHS, order_schema, schema_text
from restaurant_app.models import V2_ORDER_FIELDS, Order, OrderEvent, OrderItem, Payment
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import InvalidOrder, fast_path_order, full_path_order, parse_order
from tests.services import consume_all, produce, query, wait_until
from tests.test_validation_properties import NEAR_VALID, NOW, SKEW

CONTRACT_PAGE = Path(__file__).resolve().parent.parent / "docs" / "ORDER_CONTRACT.md"
VALIDATORS = {version: jsonschema.Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))
              for version, path in SCHEMA_PATHS.items()}
VALIDATOR = VALIDATORS[1]
LONG_AGO = timedelta(days=3650)  # the page's examples are dated; any past date is accepted


def page_examples(orders: bool = True) -> list[bytes]:
    """The JSON examples of orders (or of cancellations and refunds) on the contract page, as a
    sender would send them."""
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    blocks = [block.encode() for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]
    return [block for block in blocks if ("kind" in json.loads(block)) != orders]


def fields_of(struct: type[msgspec.Struct]) -> tuple[set[str], set[str]]:
    """Every field of ``struct`` and those without a default."""
    fields = msgspec.structs.fields(struct)
    return {f.name for f in fields}, {f.name for f in fields if f.required}


def version_of(message: dict) -> int:
    return message.get("schema_version") or 1


@pytest.mark.parametrize("version", sorted(SCHEMA_PATHS))
def test_the_committed_schema_is_the_one_the_code_builds(version: int):
    assert SCHEMA_PATHS[version].read_text(encoding="utf-8") == schema_text(version), (
        f"{SCHEMA_PATHS[version].name} is out of date: run python -m restaurant_app.contract"
    )
    jsonschema.Draft202012Validator.check_schema(order_schema(version))
    assert SCHEMA_PATHS[1] == SCHEMA_PATH


def test_the_schema_names_the_models_fields_and_requires_those_without_a_default():
    names, required = fields_of(Order)
    v1, v2 = order_schema(1), order_schema(2)
    assert set(v1["properties"]) == names - set(V2_ORDER_FIELDS)
    assert set(v1["required"]) == required
    assert set(v2["properties"]) == names - {"payment_method"}
    assert set(v2["required"]) == required - {"payment_method"} | {"schema_version", "payments"}
    names, required = fields_of(OrderItem)
    assert set(v1["$defs"]["item"]["properties"]) == names - {"discount"}
    assert set(v2["$defs"]["item"]["properties"]) == names
    assert set(v1["$defs"]["item"]["required"]) == set(v2["$defs"]["item"]["required"]) == required
    names, required = fields_of(Payment)
    assert set(v2["properties"]["payments"]["items"]["properties"]) == names
    assert set(v2["properties"]["payments"]["items"]["required"]) == required


def test_the_contract_page_describes_every_field_of_every_version():
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    described = set(re.findall(r"^\| `([a-z_\[\].]+)` \|", text, re.MULTILINE))
    expected = set()
    for version in SCHEMA_PATHS:
        schema = order_schema(version)
        expected |= set(schema["properties"])
        expected |= {f"items[].{name}" for name in schema["$defs"]["item"]["properties"]}
    payment = order_schema(2)["properties"]["payments"]["items"]
    expected |= {f"payments[].{name}" for name in payment["properties"]}
    expected |= fields_of(OrderEvent)[0]
    assert described == expected


@pytest.mark.parametrize("seed", range(40))
def test_every_generated_order_fits_the_schema(seed: int):
    for order in OrderGenerator(seed).orders_for_tick(4):
        VALIDATOR.validate(json.loads(order.dumps()))


def test_the_pages_examples_fit_the_schema_and_are_accepted_by_both_paths():
    examples = page_examples()
    assert len(examples) >= 4
    for raw in examples:
        VALIDATORS[version_of(json.loads(raw))].validate(json.loads(raw))
        order = parse_order(raw, now=datetime.now(UTC))
        assert order == full_path_order(raw, datetime.now(UTC), SKEW)
        compact = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode()
        assert fast_path_order(compact, datetime.now(UTC), SKEW) == order
    anonymous = parse_order(examples[1])
    assert anonymous.customer_id is None and anonymous.customer_name is None
    assert anonymous.store_id == "loja-paulista"


def test_the_examples_break_the_rules_beyond_the_schema_as_the_page_says():
    """The schema cannot check the total or the clock; parse_order does."""
    example = json.loads(page_examples()[0])
    wrong_total = {**example, "total": "1.00"}
    VALIDATOR.validate(wrong_total)
    with pytest.raises(InvalidOrder, match="does not equal the sum of the items"):
        parse_order(json.dumps(wrong_total).encode())
    future = {**example, "created_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    VALIDATOR.validate(future)
    with pytest.raises(InvalidOrder, match="more than 300 s in the future"):
        parse_order(json.dumps(future).encode())


@pytest.mark.parametrize("version", [3, 0, "1", True, 1.5])
def test_an_unknown_version_is_refused_by_the_schema_and_rejected_with_its_reason(version):
    message = {**json.loads(page_examples()[0]), "schema_version": version}
    assert not any(validator.is_valid(message) for validator in VALIDATORS.values())
    reason = r"^unknown schema_version .*; this pipeline reads versions 1 and 2$"
    with pytest.raises(InvalidOrder, match=reason):
        parse_order(json.dumps(message).encode())


@settings(max_examples=500, deadline=None)
@given(NEAR_VALID)
def test_every_message_parse_order_accepts_fits_the_schema(raw: bytes):
    try:
        order = parse_order(raw, max_clock_skew=SKEW, now=NOW)
    except InvalidOrder:
        return
    VALIDATORS[order.schema_version].validate(json.loads(raw))


@pytest.mark.integration
def test_the_worker_stores_every_v1_form_and_rejects_an_unknown_version(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    examples = page_examples()
    generated = OrderGenerator(seed=20).order()
    unversioned = {key: value for key, value in json.loads(generated.dumps()).items()
                   if key not in ("schema_version", "store_id")}
    v3 = {**json.loads(OrderGenerator(seed=21).order().dumps()), "schema_version": 3}
    messages = [*examples[:2], json.dumps(unversioned).encode(), json.dumps(v3).encode()]
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, m) for m in messages])

    read = "SELECT order_id::text, store_id, customer_id, customer_name FROM orders ORDER BY 1"
    wait_until(lambda: len(query(database_url, read)) == 3, message="the v1 orders never arrived")
    rows = query(database_url, read)
    expected = [parse_order(m, now=datetime.now(UTC)) for m in messages[:3]]
    assert rows == sorted((o.order_id, o.store_id, o.customer_id, o.customer_name) for o in expected)
    assert ("loja-paulista", None) in {(r[1], r[2]) for r in rows}
    assert dict((r[0], r[1]) for r in rows)[generated.order_id] == "main"

    rejected = wait_until(lambda: query(database_url, "SELECT raw, reason FROM rejected_orders") or None)
    assert [(bytes(raw), reason) for raw, reason in rejected] == [
        (messages[-1], "unknown schema_version 3; this pipeline reads versions 1 and 2")]
    (dead,) = consume_all(stack.kafka.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=1)
    assert dict(dead.headers)["__connect.errors.exception.message"] == rejected[0][1].encode()
