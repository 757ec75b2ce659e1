"""Erasing one customer (LGPD): through the real worker, report job and command, nothing that
names them is left in any table; the unit checks of what names a customer."""

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.erasure import ERASED, names_customer, needles, without_names
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderItem
from restaurant_app.settings import PROJECT_ROOT, Settings
from tests.services import produce, query, run_report_job, wait_until

NAME = "Zélia Quaresma"


def test_a_name_is_found_as_utf8_and_as_json_s_ascii_escapes():
    assert names_customer("{'customer_name': 'Zélia Quaresma'}".encode(), 7, [NAME])
    assert names_customer(json.dumps({"customer_name": NAME}).encode(), 7, [NAME])
    assert not names_customer(b'{"customer_name": "Z\\u00e9lia Q."}', 7, [NAME])


@pytest.mark.parametrize(("data", "named"), [
    (b'{"customer_id": 4321, "x"', True), (b'{"customer_id":"4321"}', True),
    (b'{"customer_id" :  4321}', True), (b'{"customer_id": 43210}', False),
    (b'{"customer_id": 4321.5}', False), (b'{"order_id": 4321}', False), (b"total 4321", False),
])
def test_an_id_names_the_customer_only_as_the_customer_id(data: bytes, named: bool):
    assert names_customer(data, 4321, []) is named


def test_candidates_include_the_id_digits_and_ignore_empty_names():
    assert needles(12, ["Ana", " ", "Zé"]) == sorted({b"12", b"Ana", "Zé".encode(), b"Z\\u00e9"})


def test_the_name_leaves_the_reason_and_the_rest_stays():
    assert without_names(f"'customer_name' {NAME!r} is too long", [NAME, "Zélia"]) == (
        f"'customer_name' '{ERASED}' is too long")


def order(at: datetime, customer_id: int, name: str) -> Order:
    dish = MENU[0]
    return Order(order_id=str(uuid.uuid4()), created_at=at, customer_id=customer_id, customer_name=name,
                 channel="takeaway", payment_method="cash",
                 items=[OrderItem(dish=dish.name, category=dish.category, unit_price=dish.price,
                                  quantity=1)], total=dish.price)


def invalid(an_order: Order, **changes: object) -> dict:
    return {**json.loads(an_order.dumps()), "channel": "teleport", **changes}


TEXT_COLUMNS = """
SELECT c.table_name, c.column_name, c.udt_name FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
  AND c.udt_name IN ('text', 'varchar', 'bpchar', 'json', 'jsonb', 'bytea', '_text', '_bytea')
"""


CONTAINS = {
    "bytea": "position(convert_to(f, 'UTF8') IN {column}) > 0",
    "_bytea": "EXISTS (SELECT FROM unnest({column}) v WHERE position(convert_to(f, 'UTF8') IN v) > 0)",
}
"""How a column of each byte type is searched; every other type is searched as text."""


PERIOD_CUSTOMERS = """
SELECT u.unit, date_trunc(u.unit, o.created_at, %(zone)s), count(DISTINCT o.customer_id)
FROM orders o CROSS JOIN unnest(ARRAY['month', 'week']) AS u (unit)
WHERE o.customer_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
"""


def rows_naming(database_url: str, forms: list[str]) -> dict[str, int]:
    """How many rows of each table's text, JSON and byte columns hold one of ``forms``."""
    found = {}
    for table, column, kind in query(database_url, TEXT_COLUMNS):
        contains = sql.SQL(CONTAINS.get(kind, "strpos({column}::text, f) > 0")).format(
            column=sql.Identifier(column))
        statement = sql.SQL("SELECT count(*) FROM {table}"
                            " WHERE EXISTS (SELECT FROM unnest(%s::text[]) f WHERE {contains})").format(
            table=sql.Identifier(table), contains=contains)
        with psycopg.connect(database_url) as conn:
            count = conn.execute(statement, (forms,)).fetchone()[0]
        if count:
            found[f"{table}.{column}"] = count
    return found


def erase(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restaurant_app.admin", "erase-customer", *args],
                          env={**os.environ, **env},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.integration
def test_erasing_a_customer_leaves_nothing_that_names_them(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    customer = random.randint(10_000_000, 99_999_999)
    name = f"{NAME} {uuid.uuid4().hex[:6]}"
    escaped = json.dumps(name)[1:-1]  # the name as a producer with ASCII-only JSON writes it
    at = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    theirs = [order(at + timedelta(seconds=s), customer, name) for s in range(2)]
    someone_else = order(at, customer + 1, "Outra Pessoa")
    messages = [o.dumps() for o in [*theirs, someone_else]] + [
        json.dumps(invalid(theirs[0], order_id=str(uuid.uuid4())), ensure_ascii=False).encode(),
        json.dumps(invalid(theirs[0], order_id=str(uuid.uuid4()))).encode(),  # name as \\u escapes
        b'{"customer_id": %d, "channel": ' % customer,  # cut short: only the id names them
        json.dumps(invalid(someone_else)).encode(),
    ]
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, m) for m in messages])
    wait_until(lambda: query(database_url, "SELECT (SELECT count(*) FROM orders),"
                                           " (SELECT count(*) FROM rejected_orders)")[0] == (3, 4),
               message="the orders and rejections never all arrived")
    assert run_report_job(database_url)["exit_code"] == 0
    # Its hour and day, for its store and for the chain; the chain's week and month.
    assert query(database_url, "SELECT count(*) FROM report_customers WHERE customer_id = %s",
                 (customer,))[0][0] == 6
    assert query(database_url, "SELECT * FROM report_period_customers ORDER BY 1, 2") == query(
        database_url, PERIOD_CUSTOMERS, {"zone": Settings.from_env().restaurant_timezone})
    report_rows = query(database_url, "SELECT (SELECT count(*) FROM report_customers WHERE customer_id = %s)"
                        " + (SELECT count(*) FROM report_staging WHERE customer_id = %s)",
                        (customer, customer))[0][0]
    forms = [name, escaped]
    before = rows_naming(database_url, forms)
    assert (before["orders.customer_name"], before["rejected_orders.raw"]) == (2, 2), before

    dry = erase(worker.env, "--customer-id", str(customer), "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert (f"Would erase customer {customer} (1 name(s) found): 2 order(s) anonymised, 3 rejected"
            f" message(s) emptied, {report_rows} report row(s) and 0 insight(s) deleted.") in dry.stdout
    assert rows_naming(database_url, forms) == before

    done = erase(worker.env, "--customer-id", str(customer))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Erased customer {customer} (1 name(s) found): 2 order(s) anonymised" in done.stdout
    assert f"{worker.env['DEAD_LETTER_TOPIC']!r} keeps messages 7 day(s)" in done.stdout

    assert rows_naming(database_url, forms) == {}
    assert query(database_url, "SELECT (SELECT count(*) FROM orders WHERE customer_id = %s),"
                               " (SELECT count(*) FROM report_customers WHERE customer_id = %s),"
                               " (SELECT count(*) FROM report_staging WHERE customer_id = %s)",
                 (customer,) * 3) == [(0, 0, 0)]
    ids = [row[0] for row in query(database_url, "SELECT raw FROM rejected_orders WHERE erased_at IS NULL")]
    assert [names_customer(bytes(raw), customer, forms) for raw in ids] == [False]
    # The week's and month's counts lose the customer, as SQL over the anonymised orders does.
    assert query(database_url, "SELECT * FROM report_period_customers ORDER BY 1, 2") == query(
        database_url, PERIOD_CUSTOMERS, {"zone": Settings.from_env().restaurant_timezone})
    assert query(database_url, "SELECT customer_name, count(*) FROM orders GROUP BY 1 ORDER BY 1") == [
        ("Outra Pessoa", 1), (None, 2)]
    assert query(database_url, "SELECT count(*) FROM rejected_orders")[0][0] == 4  # each still accounted
