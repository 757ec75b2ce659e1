"""Fault injection on the real broker and database; each test ends with an exact account of every message."""

import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.kafka_broker import KafkaBroker
from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port
from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from tests.services import admin, consume_all, create_topic, execute, produce, query, wait_until

pytestmark = pytest.mark.integration


def orders_from(seed: int, count: int) -> list[Order]:
    generator = OrderGenerator(seed=seed)
    return [generator.order() for _ in range(count)]


def account(database_url: str) -> tuple[int, int, int]:
    """(orders, order lines, rejections) in the database."""
    return query(database_url, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),"
                               " (SELECT count(*) FROM rejected_orders)")[0]


def expected(orders: list[Order], rejections: int) -> tuple[int, int, int]:
    return len(orders), sum(len(o.items) for o in orders), rejections


def altered(order: Order, **changes: object) -> bytes:
    return json.dumps({**json.loads(order.dumps()), **changes}).encode()


def test_a_row_postgresql_refuses_is_rejected_with_its_reason_and_the_batch_stored(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.start()
    wait_until(lambda: query(database_url, "SELECT to_regclass('orders') IS NOT NULL")[0][0])
    wait_until(lambda: executed_unless_deadlocked(
        database_url, "ALTER TABLE orders ADD CONSTRAINT no_refused CHECK (customer_name <> 'Refused')"))
    orders = orders_from(40, 30)
    refused = altered(orders[17], customer_name="Refused")
    messages = [(None, refused if n == 17 else o.dumps()) for n, o in enumerate(orders)]
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], messages)

    kept = orders[:17] + orders[18:]
    wait_until(lambda: account(database_url) == expected(kept, 1), timeout=60)
    [(raw, reason)] = query(database_url, "SELECT raw, reason FROM rejected_orders")
    assert bytes(raw) == refused
    assert reason.startswith("PostgreSQL refused the order [23514]") and "no_refused" in reason
    [dead] = consume_all(stack.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=1)
    assert dict(dead.headers)["__connect.errors.exception.class.name"] == b"RefusedByDatabase"


def executed_unless_deadlocked(database_url: str, statement: str) -> bool:
    """Run ``statement``; False if PostgreSQL ended it in a deadlock (the worker's partition upkeep at
    start-up takes the same table's locks), so that the caller tries again."""
    try:
        execute(database_url, statement)
    except psycopg.errors.DeadlockDetected:
        return False
    return True


def test_a_conflicting_duplicate_is_recorded_and_never_merged(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    [order] = orders_from(41, 1)
    worker.start()
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, order.dumps())])
    wait_until(lambda: account(database_url) == expected([order], 0))
    extra = {"dish": "Pudim de Leite", "category": "sobremesa", "unit_price": "16.90", "quantity": 1}
    items = json.loads(order.dumps())["items"]
    bigger = altered(order, items=[*items, extra], total=str(order.total + Decimal("16.90")))
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, order.dumps()), (None, bigger)])

    wait_until(lambda: account(database_url) == expected([order], 1), timeout=60)
    [(reason,)] = query(database_url, "SELECT reason FROM rejected_orders")
    assert reason.startswith(f"conflicting duplicate of order {order.order_id}")


def test_a_message_over_the_producers_limit_is_kept_whole_and_dead_lettered_truncated(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    huge = b"x" * 1_040_000  # under the broker's limit, over the producer's 1,000,000 bytes
    [order] = orders_from(42, 1)
    worker.start()
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(b"huge", huge), (None, order.dumps())])

    wait_until(lambda: account(database_url) == expected([order], 1), timeout=60)
    assert query(database_url, "SELECT length(raw) FROM rejected_orders") == [(len(huge),)]
    [dead] = consume_all(stack.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=1)
    headers = dict(dead.headers)
    assert headers["truncated-from-bytes"] == str(len(huge)).encode()
    assert len(dead.value) < 1_000_000 and huge.startswith(dead.value)


def set_topic_config(kafka: KafkaBroker, topic: str, **config: str) -> None:
    admin(kafka.bootstrap_servers,
          lambda client: client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)]))


def test_a_dead_letter_topic_that_is_down_pauses_the_stream_then_gets_every_rejection(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    dead_letter_topic = worker.env["DEAD_LETTER_TOPIC"]
    # A topic whose records may be at most 64 bytes refuses every dead letter.
    create_topic(stack.bootstrap_servers, dead_letter_topic, **{"max.message.bytes": "64"})
    good = orders_from(43, 5)
    bad = [b"{broken", b"[1, 2]"]
    worker.start()
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(None, bad[0]), *((None, o.dumps()) for o in good), (None, bad[1])])
    worker.wait_for_log("Could not publish 2 rejection(s) to the dead-letter topic", timeout=90)
    waiting = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NULL"
    assert query(database_url, waiting)[0][0] >= 1

    set_topic_config(stack.kafka, dead_letter_topic, **{"max.message.bytes": "1048588"})
    wait_until(lambda: account(database_url) == expected(good, 2), timeout=90)
    wait_until(lambda: query(database_url, waiting) == [(0,)], timeout=90)
    dead = consume_all(stack.bootstrap_servers, dead_letter_topic, expected=2)
    assert sorted({m.value for m in dead}) == sorted(bad)


def test_an_unforeseen_error_never_lets_an_offset_past_the_unstored_batch(
    stack: ScratchStack, worker: WorkerProcess, database_url: str, tmp_path: Path
):
    flag = tmp_path / "fault"
    flag.touch()
    worker.env["FAULT_FLAG"] = str(flag)
    worker.app = "tests.faulty_app"
    worker.env["TOPIC_PARTITIONS"] = "1"
    first, rest = orders_from(44, 1), orders_from(45, 20)
    worker.start()
    # One message held at the head before any commit: the gap Faust 0.15 would commit past.
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in first])
    worker.wait_for_log("RuntimeError while storing the batch", timeout=60)
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in rest])
    worker.wait_for_log("tried again in 2.0 s", timeout=60)  # held past a few commit intervals
    worker.kill()
    assert account(database_url) == (0, 0, 0)

    flag.unlink()
    worker.start()
    wait_until(lambda: account(database_url) == expected(first + rest, 0), timeout=90,
               message="orders held by the failure were lost: an offset was committed past them")
    assert query(database_url, "SELECT count(DISTINCT order_id) FROM orders")[0][0] == 21


def committed_offsets(stack: ScratchStack, group: str) -> list[int]:
    """The offsets Kafka holds as committed for ``group``, by partition."""
    offsets = admin(stack.bootstrap_servers, lambda client: client.list_consumer_group_offsets(group))
    return [offsets[tp].offset for tp in sorted(offsets)]


def lock_waiters(database_url: str) -> int:
    """Sessions of the database waiting for a lock: the worker's batch, held by the test's lock."""
    return query(database_url, "SELECT count(*) FROM pg_stat_activity"
                               " WHERE datname = current_database() AND wait_event_type = 'Lock'")[0][0]


def test_postgresql_failing_with_a_batch_in_flight_and_another_behind_it_commits_nothing_past_it(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env["TOPIC_PARTITIONS"] = "1"
    topic, first, second = worker.env["ORDERS_TOPIC"], orders_from(48, 40), orders_from(49, 40)
    warm_up = orders_from(47, 1)  # stored first: the worker's schema and connections are ready
    worker.start()
    produce(stack.bootstrap_servers, topic, [(None, o.dumps()) for o in warm_up])
    wait_until(lambda: account(database_url) == expected(warm_up, 0), timeout=60)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE order_keys IN SHARE MODE")  # the first batch's insert waits on it
        produce(stack.bootstrap_servers, topic, [(None, o.dumps()) for o in first])
        wait_until(lambda: lock_waiters(database_url) == 1, message="the first batch never got to PostgreSQL")
        produce(stack.bootstrap_servers, topic, [(None, o.dumps()) for o in second])
        # PostgreSQL drops the session storing the first batch; the worker tries it again, and waits again.
        execute(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND wait_event_type = 'Lock'")
        worker.wait_for_log("PostgreSQL is unavailable while storing", timeout=60)
        wait_until(lambda: lock_waiters(database_url) == 1, message="the first batch was not tried again")
        assert all(offset <= 1 for offset in committed_offsets(stack, worker.env["APP_ID"]))
        assert account(database_url) == expected(warm_up, 0)
    # The lock released: the first batch is stored, then the second, each once.
    wait_until(lambda: account(database_url) == expected(warm_up + first + second, 0), timeout=90,
               message="orders in flight when PostgreSQL failed were lost")
    assert query(database_url, "SELECT count(DISTINCT order_id) FROM orders")[0][0] == 81
    wait_until(lambda: committed_offsets(stack, worker.env["APP_ID"]) == [81], timeout=60,
               message="the stored batches' offsets were never committed")


def test_the_broker_stopped_and_restarted_mid_stream_loses_nothing(
    worker: WorkerProcess, database_url: str, own_service_home: Path
):
    broker = KafkaBroker(own_service_home / "kafka", free_port(), free_port(), heap="256m", log_level="WARN")
    broker.start()
    try:
        worker.env["KAFKA_BROKER"] = broker.bootstrap_servers
        before, after = orders_from(46, 200), orders_from(47, 200)
        worker.start()
        produce(broker.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in before])
        wait_until(lambda: account(database_url)[0] > 0)
        broker.stop()
        broker.start()
        produce(broker.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in after])
        wait_until(lambda: account(database_url) == expected(before + after, 0), timeout=180,
                   message="orders were lost across the broker's restart")
    finally:
        worker.stop()
        broker.stop()


def poison_of_every_kind(order: Order) -> list[bytes]:
    """Messages that once crashed the agent or reached PostgreSQL and failed there."""
    first_item = json.loads(order.dumps())["items"][0]
    return [
        b"[" * 10_000,                                       # nested deeper than the decoder's stack
        altered(order, total=10 ** 30),                      # an amount Decimal cannot quantize
        altered(order, customer_id=987654321).replace(b"987654321", b"9" * 5000),  # past int()'s limit
        altered(order, customer_name="LONE").replace(b'"LONE"', b'"\\ud800"'),  # a lone surrogate
        altered(order, created_at="2026-11-29T12:00:00+16:00"),          # an offset PostgreSQL refuses
        altered(order, created_at="2099-01-01T00:00:00+00:00"),          # far in the future
        altered(order, customer_name="\x1b[31mred\x1b[0m"),            # an ANSI escape
        json.dumps(json.loads(order.dumps())).encode("utf-16"),         # not UTF-8
        order.dumps()[:-1] + b', "total": "1.00"}',                       # a duplicate key
        altered(order, order_id="00000000-0000-0000-0000-000000000000"),  # the nil UUID
        altered(order, items=[{**first_item, "unit_price": "1_0.00"}]),  # a Python-only number
        altered(order, customer_name="x" * 60_000),                      # a huge value to echo
    ]


def test_poison_of_every_kind_amid_valid_orders_is_rejected_and_the_agent_goes_on(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    good = orders_from(48, 24)
    poison = poison_of_every_kind(good[0])
    messages = [(None, o.dumps()) for o in good[:12]] + [(None, p) for p in poison]
    messages += [(None, o.dumps()) for o in good[12:]]
    worker.start()
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], messages)

    wait_until(lambda: account(database_url) == expected(good, len(poison)), timeout=90,
               message="some message was neither stored nor rejected")
    reasons = [row[0] for row in query(database_url, "SELECT reason FROM rejected_orders")]
    assert all(0 < len(reason) <= 200 for reason in reasons)
    after = orders_from(49, 3)  # the agent is alive and storing
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in after])
    wait_until(lambda: account(database_url) == expected(good + after, len(poison)), timeout=60)
    assert "Traceback" not in worker.log_file.read_text()
