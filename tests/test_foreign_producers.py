"""Orders published by clients we did not write (kcat, Kafka's Java console producer), with every codec."""

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from tests.foreign_clients import console_producer, kcat
from tests.services import consume_all, query, wait_until

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def account(database_url: str) -> tuple[int, int, int]:
    """(orders, order lines, rejections) in the database."""
    return query(database_url, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),"
                               " (SELECT count(*) FROM rejected_orders)")[0]


def expected(orders: list[Order], rejections: int) -> tuple[int, int, int]:
    return len(orders), sum(len(o.items) for o in orders), rejections


def test_orders_from_kcat_and_the_java_console_producer_are_stored_once_with_every_codec(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    generator = OrderGenerator(seed=190)
    worker.start()
    topic = worker.env["ORDERS_TOPIC"]
    published: list[Order] = []
    for codec in CODECS:
        by_kcat, by_java = ([generator.order() for _ in range(25)] for _ in range(2))
        kcat(stack.bootstrap_servers, topic, [o.dumps() for o in by_kcat], "-z", codec)
        console_producer(stack.bootstrap_servers, topic, [o.dumps() for o in by_java], codec)
        published += by_kcat + by_java

    wait_until(lambda: account(database_url) == expected(published, 0), timeout=120,
               message=f"not every order was stored: {account(database_url)}")
    stored = {str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")}
    assert stored == {o.order_id for o in published}
    worker.check_alive()


def rejections(database_url: str) -> list[tuple[int, int, bytes, str]]:
    rows = query(database_url, "SELECT kafka_partition, kafka_offset, raw, reason FROM rejected_orders")
    return [(p, o, bytes(raw), reason) for p, o, raw, reason in rows]


def test_header_bytes_that_are_not_utf8_and_200_headers_from_kcat_each_get_an_answer(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    generator = OrderGenerator(seed=191)
    worker.start()
    topic, servers = worker.env["ORDERS_TOPIC"], stack.bootstrap_servers
    before, bad_name, bad_value, many, after = (
        [generator.order() for _ in range(n)] for n in (10, 3, 3, 2, 10))
    two_hundred = [arg for n in range(200) for arg in ("-H", f"h{n:03d}=value {n}")]
    kcat(servers, topic, [o.dumps() for o in before])
    kcat(servers, topic, [o.dumps() for o in bad_name], "-H", b"\xff\xfeorigin=pos-7", "-z", "lz4")
    kcat(servers, topic, [o.dumps() for o in bad_value], "-H", b"origin=\xff\xfe\x80pos")
    kcat(servers, topic, [o.dumps() for o in many], *two_hundred)
    kcat(servers, topic, [b"{not json with 200 headers"], *two_hundred)
    kcat(servers, topic, [o.dumps() for o in after])

    stored_ones = before + bad_value + many + after
    wait_until(lambda: account(database_url) == expected(stored_ones, len(bad_name) + 1), timeout=120,
               message=f"not every message was answered: {account(database_url)}")
    stored = {str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")}
    assert stored == {o.order_id for o in stored_ones}
    found = rejections(database_url)
    unreadable = sorted(raw for _, _, raw, reason in found if reason.startswith(
        "unreadable Kafka record: header 1 of 1 has a name that is not UTF-8"))
    assert unreadable == sorted(o.dumps() for o in bad_name)
    [invalid] = [reason for _, _, raw, reason in found if raw == b"{not json with 200 headers"]
    assert not invalid.startswith("unreadable")
    waiting = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NULL"
    wait_until(lambda: query(database_url, waiting) == [(0,)], timeout=60)
    worker.check_alive()


def test_invalid_messages_with_a_990_kb_key_or_600_kb_of_headers_are_rejected_and_dead_lettered(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    generator = OrderGenerator(seed=192)
    worker.start()
    topic, servers = worker.env["ORDERS_TOPIC"], stack.bootstrap_servers
    before, after = [generator.order() for _ in range(5)], [generator.order() for _ in range(5)]
    big_key, keyed_value = b"k" * 990_000, b"{not an order" + b" " * 40_000
    headers = [(f"h{n}", bytes([65 + n]) * 100_000) for n in range(6)]
    headed_value = b"[" + b"1," * 200_000 + b"1]"
    kcat(servers, topic, [o.dumps() for o in before])
    kcat(servers, topic, [big_key + b"\t" + keyed_value], "-K", "\t")
    kcat(servers, topic, [headed_value], *(a for n, v in headers for a in ("-H", f"{n}=".encode() + v)))
    kcat(servers, topic, [o.dumps() for o in after])

    wait_until(lambda: account(database_url) == expected(before + after, 2), timeout=120,
               message=f"not every message was answered: {account(database_url)}")
    rows = query(database_url, "SELECT raw, message_key, header_names, header_values, reason"
                               " FROM rejected_orders ORDER BY kafka_offset")
    kept = {bytes(raw): (key and bytes(key), [bytes(n) for n in names], [bytes(v) for v in values])
            for raw, key, names, values, _ in rows}
    assert kept[keyed_value] == (big_key, [], [])
    assert kept[headed_value] == (None, [n.encode() for n, _ in headers], [v for _, v in headers])

    dead = {m.value: m for m in consume_all(servers, worker.env["DEAD_LETTER_TOPIC"], expected=2)}
    assert set(dead) == {keyed_value, headed_value}
    keyed = dead[keyed_value]
    assert big_key.startswith(keyed.key) and len(keyed.key) < len(big_key)
    assert dict(keyed.headers)["key-truncated-from-bytes"] == b"990000"
    assert dict(dead[headed_value].headers)["dropped-headers"] == b"6"
    waiting = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NULL"
    wait_until(lambda: query(database_url, waiting) == [(0,)], timeout=60)
    worker.check_alive()
