"""``POST /api/orders``: its rules without services, then a real worker taking orders over HTTP."""

import functools
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.contract import OPENAPI_PATH, SCHEMA_PATHS, as_text, openapi
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import InvalidOrder, parse_order
from restaurant_app.web.orders_api import (
    MAX_BATCH_ORDERS,
    MAX_BODY_BYTES,
    Refused,
    check_token,
    is_loopback,
    parse_all,
    split_batch,
)
from tests.services import admin, create_topic, query, wait_until
from tests.test_contract import CONTRACT_PAGE, LONG_AGO, page_examples

TOKEN = "s3cret-token"
SKEW = timedelta(minutes=5)
DOCUMENTED = openapi()["paths"]["/api/orders"]["post"]["responses"]


def messages(count: int, seed: int = 40) -> list[bytes]:
    return [o.dumps() for o in OrderGenerator(seed).orders_for_tick(count, datetime.now(UTC))][:count]


def wrong_total(raw: bytes) -> bytes:
    return json.dumps({**json.loads(raw), "total": "0.01"}).encode()


# --- The rules, without any service ----------------------------------------------------


def test_a_body_that_is_not_an_array_is_one_order_as_sent():
    assert split_batch(b' {"a": 1, "a": 2}') == ([b' {"a": 1, "a": 2}'], False)
    assert split_batch(b"not json") == ([b"not json"], False)


def test_a_batch_is_split_into_its_orders_byte_for_byte():
    body = b'[{"order_id": "x", "order_id": "y"} , {"b":[1,2]}]'
    assert split_batch(body) == ([b'{"order_id": "x", "order_id": "y"}', b'{"b":[1,2]}'], True)


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"[]", 400, "the batch is empty"),
    (b'[{"a": 1},', 400, "the body is not a JSON array of orders"),
    (b"[" + b",".join([b"{}"] * (MAX_BATCH_ORDERS + 1)) + b"]", 413, f"the limit is {MAX_BATCH_ORDERS}"),
])
def test_a_bad_batch_is_refused_whole(body: bytes, status: int, reason: str):
    with pytest.raises(Refused) as refused:
        split_batch(body)
    assert refused.value.status == status
    assert reason in refused.value.reason


def test_one_bad_order_refuses_the_batch_with_every_reason():
    good = messages(4)
    assert [o.order_id for o in parse_all(good, True, SKEW)] == [parse_order(r).order_id for r in good]
    raws = [good[0], wrong_total(good[1]), good[2], b"{}"]
    with pytest.raises(Refused) as refused:
        parse_all(raws, True, SKEW)
    assert refused.value.status == 400
    reasons = {}
    for index in (1, 3):
        with pytest.raises(InvalidOrder) as invalid:
            parse_order(raws[index])
        reasons[index] = str(invalid.value)
    assert refused.value.extra["rejected"] == [{"index": i, "error": reason} for i, reason in reasons.items()]


def test_a_single_bad_order_gets_parse_orders_reason():
    raw = wrong_total(messages(1)[0])
    with pytest.raises(Refused) as refused:
        parse_all([raw], False, SKEW)
    assert refused.value.status == 400 and "does not equal the sum of the items" in refused.value.reason


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("10.0.0.5", False), ("pos.lan", False)])
def test_loopback_hosts(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_a_token_is_required_beyond_loopback_and_checked_when_set():
    check_token(None, "", "127.0.0.1")
    with pytest.raises(Refused) as refused:
        check_token(None, "", "0.0.0.0")
    assert refused.value.status == 403 and "ORDERS_API_TOKEN" in refused.value.reason
    check_token(f"Bearer {TOKEN}", TOKEN, "0.0.0.0")
    for wrong in (None, TOKEN, f"Bearer {TOKEN}x", "Bearer "):
        with pytest.raises(Refused) as refused:
            check_token(wrong, TOKEN, "127.0.0.1")
        assert refused.value.status == 401 and refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_the_committed_openapi_document_is_the_one_the_code_builds():
    assert OPENAPI_PATH.read_text(encoding="utf-8") == as_text(openapi()), (
        "docs/openapi.json is out of date: run python -m restaurant_app.contract"
    )
    document = openapi()
    schemas = document["components"]["schemas"]
    for version, path in SCHEMA_PATHS.items():
        committed = json.loads(path.read_text(encoding="utf-8"))
        properties = json.dumps(schemas[f"OrderV{version}"]["properties"])
        assert json.loads(properties.replace(f"#/components/schemas/ItemV{version}", "#/$defs/item")) == (
            committed["properties"])
        assert schemas[f"ItemV{version}"] == committed["$defs"]["item"]
    assert schemas["Order"]["oneOf"] == [{"$ref": f"#/components/schemas/OrderV{v}"} for v in SCHEMA_PATHS]
    for reference in re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(document)):
        assert functools.reduce(dict.get, reference.split("/"), document) is not None, reference
    for answer in DOCUMENTED.values():
        jsonschema.Draft202012Validator.check_schema(answer["content"]["application/json"]["schema"])


# --- A real worker, Kafka and PostgreSQL -----------------------------------------------


def documented(status: int, answer: dict) -> dict:
    """``answer``, once checked against what docs/openapi.json says a ``status`` answer holds."""
    schema = DOCUMENTED[str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(answer)
    return answer


def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict, dict]:
    """POST ``body`` with Python's own client: the status, the JSON answer and the headers."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body = response.status, response.read()
            return status, documented(status, json.loads(body)), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, documented(error.code, json.loads(error.read())), dict(error.headers)


def curl(url: str, body: bytes, *options: str) -> tuple[int, dict]:
    """POST ``body`` with curl, as a point of sale's script would: the status and the JSON answer."""
    completed = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "60", "--write-out", "\n%{http_code}",
         "--header", "Content-Type: application/json", "--header", f"Authorization: Bearer {TOKEN}",
         *options, "--data-binary", "@-", url],
        input=body, capture_output=True, check=True,
    )
    answer, status = completed.stdout.rsplit(b"\n", 1)
    return int(status), documented(int(status), json.loads(answer))


@pytest.mark.integration
def test_posted_orders_are_stored_exactly_once_and_bad_ones_refused_with_their_reason(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env["ORDERS_API_TOKEN"] = TOKEN
    worker.start()
    url = f"{worker.url}/api/orders"
    with urllib.request.urlopen(f"{worker.url}/api/openapi.json", timeout=30) as response:
        assert json.loads(response.read()) == json.loads(OPENAPI_PATH.read_text())
    single, *batch = messages(101, seed=41)
    single_id = parse_order(single).order_id

    assert curl(url, single) == (202, {"order_id": single_id})
    assert curl(url, single) == (202, {"order_id": single_id})  # a retry after a lost answer
    status, answer, _ = post(url, b"[" + b",".join(batch) + b"]")
    assert (status, answer["accepted"]) == (202, 100)
    assert answer["order_ids"] == [parse_order(raw).order_id for raw in batch]
    again = post(url, b"[" + b",".join(batch[:10]) + b"]")[:2]
    assert again == (202, {"accepted": 10, "order_ids": answer["order_ids"][:10]})

    status, answer, headers = post(url, single, token=None)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    refused_batch = messages(5, seed=42)
    refused_batch[2] = wrong_total(refused_batch[2])
    status, answer, _ = post(url, b"[" + b",".join(refused_batch) + b"]")
    assert status == 400 and [r["index"] for r in answer["rejected"]] == [2]
    v3 = json.dumps({**json.loads(messages(1, seed=43)[0]), "schema_version": 3}).encode()
    assert curl(url, v3) == (400, {"error": "unknown schema_version 3; this pipeline reads versions 1 and 2"})
    assert curl(url, b'{"order_id": 1}')[0] == 400
    status, answer = curl(url, b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert status == 413 and "over" in answer["error"]
    chunked = ("--header", "Transfer-Encoding: chunked")
    status, answer = curl(url, b"[" + b" " * MAX_BODY_BYTES + b"]", *chunked)
    assert status == 413
    conflicting = json.dumps({**json.loads(single), "customer_name": "Someone Else"}).encode()
    assert curl(url, conflicting) == (202, {"order_id": single_id})  # refused when stored, as on Kafka

    expected = sorted([single_id, *(parse_order(raw).order_id for raw in batch)])
    stored = "SELECT order_id::text FROM orders ORDER BY 1"
    wait_until(lambda: query(database_url, stored) == [(i,) for i in expected],
               message="the posted orders were never all stored")
    rejected = wait_until(lambda: query(database_url, "SELECT reason FROM rejected_orders") or None)
    assert rejected == [(f"conflicting duplicate of order {single_id}: same order_id, different content",)]
    assert query(database_url, "SELECT customer_name FROM orders WHERE order_id = %s", (single_id,)) == [
        (parse_order(single).customer_name,)]
    never = [parse_order(raw).order_id for raw in refused_batch if raw != refused_batch[2]]
    refused_stored = "SELECT count(*) FROM order_keys WHERE order_id::text = ANY(%s)"
    assert query(database_url, refused_stored, (never,)) == [(0,)]


def set_max_message_bytes(bootstrap_servers: str, topic: str, size: int) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(size)})
    admin(bootstrap_servers, lambda client: client.alter_configs([resource]))


DOCUMENTED_PAGES = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "sending-orders.md", CONTRACT_PAGE]


def documented_curls() -> list[str]:
    """Each ``curl`` command posting to ``/api/orders`` in the pages a point of sale's developer reads."""
    commands = []
    for page in DOCUMENTED_PAGES:
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL):
            lines = block.replace("\\\n", " ").splitlines()
            commands += [line for line in lines if line.startswith("curl ") and "/api/orders" in line]
    return commands


def test_the_pages_show_a_curl_example_each():
    assert len(documented_curls()) == len(DOCUMENTED_PAGES)


@pytest.mark.integration
def test_the_documented_curl_example_posts_the_contracts_example_to_a_real_worker(
    worker: WorkerProcess, database_url: str, tmp_path: Path
):
    worker.env.update({"ORDERS_API_TOKEN": TOKEN, "MAX_ORDER_AGE_DAYS": "36500"})  # the example is dated
    worker.start()
    example = page_examples()[0]
    (tmp_path / "order.json").write_bytes(example)
    order_id = parse_order(example, max_age=LONG_AGO).order_id
    for command in documented_curls():
        posted = subprocess.run(
            ["sh", "-c", command.replace("localhost:6066", f"localhost:{worker.web_port}")
             + " --write-out '\n%{http_code}'"],
            cwd=tmp_path, env={**os.environ, "ORDERS_API_TOKEN": TOKEN}, capture_output=True, check=True)
        answer, status = posted.stdout.rsplit(b"\n", 1)
        assert (int(status), json.loads(answer)) == (202, {"order_id": order_id}), command
    wait_until(lambda: query(database_url, "SELECT order_id::text FROM orders") == [(order_id,)],
               message="the documented example was never stored")


@pytest.mark.integration
def test_when_kafka_does_not_take_the_order_the_answer_is_503_and_a_retry_stores_it_once(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    # The topic takes no record of more than 64 bytes: Kafka refuses the order.
    topic = worker.env["ORDERS_TOPIC"]
    create_topic(stack.kafka.bootstrap_servers, topic, **{"max.message.bytes": "64"})
    worker.env["ORDERS_API_TOKEN"] = TOKEN
    worker.start()
    url = f"{worker.url}/api/orders"
    (raw,) = messages(1, seed=44)

    status, answer, headers = post(url, raw)
    assert status == 503 and headers["Retry-After"] == "5"
    assert "send the same request again" in answer["error"]
    worker.wait_for_log("Kafka did not acknowledge 1 posted order(s)", timeout=10)
    worker.wait_for_log("Refused a POST /api/orders from 127.0.0.1 with 503", timeout=10)

    set_max_message_bytes(stack.kafka.bootstrap_servers, topic, 1024 * 1024)
    status, answer, _ = wait_until(lambda: (r := post(url, raw))[0] == 202 and r, timeout=60,
                                   message="Kafka never took the order")
    assert answer == {"order_id": parse_order(raw).order_id}
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 1)
    assert query(database_url, "SELECT order_id::text FROM orders") == [(parse_order(raw).order_id,)]
