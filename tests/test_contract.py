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
from restaurant_app.contract import SCHEMA_PATH, order_schema, schema_text
from restaurant_app.models import Order, OrderItem
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import InvalidOrder, fast_path_order, full_path_order, parse_order
from tests.services import consume_all, produce, query, wait_until
from tests.test_validation_properties import NEAR_VALID, NOW, SKEW

CONTRACT_PAGE = Path(__file__).resolve().parent.parent / "docs" / "ORDER_CONTRACT.md"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
LONG_AGO = timedelta(days=3650)  # the page's examples are dated; any past date is accepted


def page_examples() -> list[bytes]:
    """The JSON examples of the contract page, as a sender would send them."""
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    return [block.encode() for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def fields_of(struct: type[msgspec.Struct]) -> tuple[set[str], set[str]]:
    """Every field of ``struct`` and those without a default."""
    fields = msgspec.structs.fields(struct)
    return {f.name for f in fields}, {f.name for f in fields if f.required}


def test_the_committed_schema_is_the_one_the_code_builds():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/order.schema.json is out of date: run python -m restaurant_app.contract"
    )
    jsonschema.Draft202012Validator.check_schema(order_schema())


def test_the_schema_names_the_models_fields_and_requires_those_without_a_default():
    schema = order_schema()
    names, required = fields_of(Order)
    assert set(schema["properties"]) == names
    assert set(schema["required"]) == required
    item = schema["$defs"]["item"]
    names, required = fields_of(OrderItem)
    assert set(item["properties"]) == names
    assert set(item["required"]) == required


def test_the_contract_page_describes_every_field_of_the_schema():
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    described = set(re.findall(r"^\| `([a-z_\[\].]+)` \|", text, re.MULTILINE))
    schema = order_schema()
    item_fields = {f"items[].{name}" for name in schema["$defs"]["item"]["properties"]}
    expected = set(schema["properties"]) | item_fields
    assert described == expected


@pytest.mark.parametrize("seed", range(40))
def test_every_generated_order_fits_the_schema(seed: int):
    for order in OrderGenerator(seed).orders_for_tick(4):
        VALIDATOR.validate(json.loads(order.dumps()))


def test_the_pages_examples_fit_the_schema_and_are_accepted_by_both_paths():
    examples = page_examples()
    assert len(examples) >= 2
    for raw in examples:
        VALIDATOR.validate(json.loads(raw))
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


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.5])
def test_an_unknown_version_is_refused_by_the_schema_and_rejected_with_its_reason(version):
    message = {**json.loads(page_examples()[0]), "schema_version": version}
    assert not VALIDATOR.is_valid(message)
    with pytest.raises(InvalidOrder, match=r"^unknown schema_version .*; this pipeline reads version 1$"):
        parse_order(json.dumps(message).encode())


@settings(max_examples=500, deadline=None)
@given(NEAR_VALID)
def test_every_message_parse_order_accepts_fits_the_schema(raw: bytes):
    try:
        parse_order(raw, max_clock_skew=SKEW, now=NOW)
    except InvalidOrder:
        return
    VALIDATOR.validate(json.loads(raw))


@pytest.mark.integration
def test_the_worker_stores_every_v1_form_and_rejects_an_unknown_version(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    examples = page_examples()
    generated = OrderGenerator(seed=20).order()
    unversioned = {key: value for key, value in json.loads(generated.dumps()).items()
                   if key not in ("schema_version", "store_id")}
    v2 = {**json.loads(OrderGenerator(seed=21).order().dumps()), "schema_version": 2}
    messages = [*examples, json.dumps(unversioned).encode(), json.dumps(v2).encode()]
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
        (messages[-1], "unknown schema_version 2; this pipeline reads version 1")]
    (dead,) = consume_all(stack.kafka.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=1)
    assert dict(dead.headers)["__connect.errors.exception.message"] == rejected[0][1].encode()
