"""The least-privileged PostgreSQL roles of migration 023, logged in as ``make run`` lets them.

Each role does its work through the product's own code (the order sink, the report job, the
web's reads) and nothing more: none creates or drops a table or reads the server's files, and
the web role writes nothing.
"""

import asyncio
import re
import stat

import psycopg
import pytest
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from infra.postgres import APP_ROLES
from infra.scratch import ScratchStack
from restaurant_app.database import Database, privileges
from restaurant_app.order_sink import save_orders
from tests.services import query, run_report_job
from tests.test_reports_job import history

pytestmark = pytest.mark.integration

FORBIDDEN_TO_ALL = {
    "create a table": "CREATE TABLE intruder (x int)",
    "drop a table": "DROP TABLE order_items",
    "alter a table": "ALTER TABLE orders ADD COLUMN intruder int",
    "read a server file": "SELECT pg_read_file('/etc/hostname')",
    "copy from a server file": "COPY rejected_orders (raw) FROM '/etc/hostname'",
    "run a program": "COPY rejected_orders (raw) FROM PROGRAM 'id'",
    "create a role": "CREATE ROLE intruder",
}

WRITES = {
    "insert an order key": "INSERT INTO order_keys (order_id, created_at) VALUES (gen_random_uuid(), now())",
    "delete orders": "DELETE FROM orders",
    "update reports": "UPDATE report_sales SET orders = 0",
    "delete rejections": "DELETE FROM rejected_orders",
}


@pytest.fixture(scope="module")
def urls(stack: ScratchStack) -> dict[str, str]:
    """A migrated database and the URL of each role, plus ``owner`` (the superuser that migrated)."""
    url = stack.new_database("roles")
    asyncio.run(Database(url).migrate())
    name = conninfo_to_dict(url)["dbname"]
    stack.postgres.enable_roles(name)
    return {"owner": url, **{role: stack.postgres.role_url(role, name) for role in APP_ROLES}}


def test_every_table_is_granted_to_the_roles_that_need_it(urls: dict[str, str]):
    """A table a migration adds must be named in privileges.sql, or no role but the web's reads it."""
    tables = query(urls["owner"], "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                   " ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                   " AND c.relkind IN ('r', 'p') AND NOT c.relispartition")
    named = set(re.findall(r"\w+", privileges()))
    assert tables and {table for (table,) in tables} <= named


def refused(url: str, statement: str) -> bool:
    """Whether PostgreSQL refuses ``statement`` to the role of ``url`` for want of privilege."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except (errors.InsufficientPrivilege, errors.UndefinedFunction):
            return True
    return False


@pytest.mark.parametrize("role", APP_ROLES)
@pytest.mark.parametrize("action", sorted(FORBIDDEN_TO_ALL))
def test_no_role_changes_the_schema_or_reads_server_files(urls: dict[str, str], role: str, action: str):
    assert refused(urls[role], FORBIDDEN_TO_ALL[action])


def test_the_owner_could_do_those_things(urls: dict[str, str]):
    """So the refusals above are the roles' doing, not statements that could never work."""
    assert not refused(urls["owner"], "CREATE TABLE allowed_to_owner (x int)")
    assert not refused(urls["owner"], "SELECT pg_read_file('/etc/hostname')")


@pytest.mark.parametrize("action", sorted(WRITES))
def test_the_web_role_writes_nothing(urls: dict[str, str], action: str):
    assert refused(urls["restaurant_web"], WRITES[action])


def test_the_roles_do_their_work(urls: dict[str, str]):
    orders = history()
    stored = asyncio.run(save_orders(urls["restaurant_ingest"], orders))
    assert stored == len(orders) > 0
    result = run_report_job(urls["restaurant_reports"], env={"SPARK_REMOTE": ""})
    assert (result["status"], result["exit_code"]) == ("succeeded", 0), result
    assert result["orders_read"] == len(orders)
    web_sees = query(urls["restaurant_web"],
                     "SELECT sum(orders) FROM report_sales WHERE granularity = 'day' AND store_id = ''")
    assert web_sees == [(len(orders),)]
    assert refused(urls["restaurant_reports"], WRITES["insert an order key"])
    assert refused(urls["restaurant_ingest"], "DELETE FROM report_sales")
    ingest = psycopg.connect(urls["restaurant_ingest"])
    with ingest as conn, pytest.raises(errors.IntegrityConstraintViolation):  # migration 029's trigger
        conn.execute("UPDATE order_keys SET order_id = gen_random_uuid() WHERE order_id = %s",
                     (orders[0].order_id,))


def test_each_password_is_kept_private_and_never_logged(stack: ScratchStack, urls: dict[str, str]):
    assert stat.S_IMODE((stack.postgres.home / "roles").stat().st_mode) == 0o700
    log = stack.postgres.log_file.read_text(errors="replace")
    for role in APP_ROLES:
        password_file = stack.postgres.role_password_file(role)
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 32 and password not in log
