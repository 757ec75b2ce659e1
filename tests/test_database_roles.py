"""The least-privileged PostgreSQL roles of migration 023, logged in as ``make run`` lets them.

Each role does its work through the product's own code (the order sink, the report job, the
web's reads) and nothing more: none creates or drops a table or reads the server's files, and
the web role writes nothing.
"""

import asyncio
import re
import stat
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.postgres import APP_ROLES, set_password
from infra.scratch import ScratchStack
from restaurant_app.database import Database, MigrationsRefused, privileges
from restaurant_app.order_sink import save_orders
from restaurant_app.partitions import keep_partitions
from restaurant_app.retention import Removed, apply_retention
from restaurant_app.settings import Settings
from restaurant_app.traffic import OrderGenerator
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
    "detach a partition": "ALTER TABLE orders DETACH PARTITION orders_default",
    "drop a partition": "DROP TABLE order_items_default",
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
    return role_urls(stack, "roles")


def role_urls(stack: ScratchStack, prefix: str) -> dict[str, str]:
    url = stack.new_database(prefix)
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


def test_the_worker_keeps_the_partitions_and_the_retentions_through_the_functions(stack: ScratchStack):
    """As ``make run``'s workers do, logged in as restaurant_ingest only (migration 024)."""
    ingest = role_urls(stack, "upkeep")["restaurant_ingest"]
    today = datetime.now(UTC).date()
    old_day = today - timedelta(days=40)
    generator = OrderGenerator(seed=2424)
    old = [generator.order(datetime.combine(old_day, time(12, n), UTC)) for n in range(3)]
    recent = [generator.order(datetime.now(UTC) - timedelta(minutes=5))]
    assert asyncio.run(save_orders(ingest, old + recent)) == 4  # into the default partitions

    async def upkeep() -> tuple[tuple[list[date], int], Removed]:
        async with await psycopg.AsyncConnection.connect(ingest, autocommit=True) as conn:
            kept = await keep_partitions(conn)
            return kept, await apply_retention(conn, replace(Settings.from_env(), orders_retention_days=30))

    (created, moved), removed = asyncio.run(upkeep())
    assert old_day in created and today in created and moved == 4
    assert removed.days == [old_day] and removed.rows["order keys"] == 3
    assert query(ingest, "SELECT order_id::text FROM orders") == [(recent[0].order_id,)]
    assert query(ingest, "SELECT count(*) FROM order_items") == [(len(recent[0].items),)]
    partitions = {row[0] for row in query(ingest, "SELECT relname FROM pg_class"
                                                  " WHERE relname LIKE 'orders_p%%'")}
    assert f"orders_p{today:%Y%m%d}" in partitions and f"orders_p{old_day:%Y%m%d}" not in partitions


UPKEEP_CALLS = {
    "list the default's days": "SELECT upkeep_default_days()",
    "create a day": "SELECT upkeep_add_day('2030-01-01')",
    "drop a day": "SELECT upkeep_drop_day('2001-01-01')",
    "delete old rows": "SELECT upkeep_delete_old('order keys', now() - interval '400 days', 10)",
}


@pytest.mark.parametrize("role", ["restaurant_web", "restaurant_reports"])
@pytest.mark.parametrize("call", sorted(UPKEEP_CALLS))
def test_only_the_worker_s_role_may_run_the_upkeep(urls: dict[str, str], role: str, call: str):
    assert refused(urls[role], UPKEEP_CALLS[call])


@pytest.mark.parametrize("call", [
    "SELECT upkeep_add_day(NULL)",
    "SELECT upkeep_drop_day(NULL)",
    "SELECT upkeep_drop_day((now() AT TIME ZONE 'UTC')::date - 1)",  # yesterday: always kept
    "SELECT upkeep_delete_old('order keys', now() - interval '1 hour', 10)",
    "SELECT upkeep_delete_old('order keys', NULL, 10)",
    "SELECT upkeep_delete_old('order keys', now() - interval '40 days', 0)",
    "SELECT upkeep_delete_old('order keys', now() - interval '40 days', 1000000)",
    "SELECT upkeep_delete_old('orders', now() - interval '40 days', 10)",
    "SELECT upkeep_delete_old('minute orders', now() - interval '40 days', 10)",
    "SELECT upkeep_delete_old('minute report_sales; DROP TABLE orders', now() - interval '40 days', 10)",
])
def test_the_upkeep_functions_refuse_what_no_upkeep_asks(urls: dict[str, str], call: str):
    with psycopg.connect(urls["restaurant_ingest"]) as conn, pytest.raises(errors.InvalidParameterValue):
        conn.execute(call)
    assert query(urls["owner"], "SELECT to_regclass('orders') IS NOT NULL") == [(True,)]


def test_the_upkeep_functions_run_as_their_owner_with_a_fixed_search_path(urls: dict[str, str]):
    rows = query(urls["owner"], "SELECT proname, prosecdef, proconfig, proowner::regrole::text FROM pg_proc"
                                " WHERE proname LIKE 'upkeep\\_%%' ORDER BY proname")
    assert [row[0] for row in rows] == ["upkeep_add_day", "upkeep_default_days", "upkeep_delete_old",
                                        "upkeep_drop_day"]
    assert {(secdef, tuple(config)) for _, secdef, config, _ in rows} == {
        (True, ("search_path=pg_catalog, public, pg_temp",))}
    assert {owner for *_, owner in rows} == {UPKEEP_ROLE}  # migration 034's, not the superuser


UPKEEP_ROLE = "restaurant_upkeep"
ROLE_ATTRIBUTES = ("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
                   " FROM pg_roles WHERE rolname = %s")
ORDERS_TABLES = "^(orders|order_items)(_default|_p[0-9]{8})?$"
"""``orders``, ``order_items`` and their partitions."""
OWNERS = "SELECT relname ~ %s, pg_get_userbyid(relowner) = %s FROM pg_class WHERE relkind IN ('r', 'p')"
UPKEEP_RIGHTS = ("SELECT table_name, privilege_type FROM information_schema.role_table_grants"
                 " WHERE grantee = %s AND table_name !~ %s")
MEMBERSHIPS = "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = %s::regrole"


def test_the_upkeep_functions_owner_cannot_log_in_and_holds_no_more_than_the_upkeep(urls: dict[str, str]):
    """The functions run with restaurant_upkeep's rights: the orders' tables it owns, the deletes of
    the retentions, and nothing a superuser or an owner of the other tables could do."""
    assert query(urls["owner"], ROLE_ATTRIBUTES, (UPKEEP_ROLE,)) == [(False,) * 6]
    with psycopg.connect(urls["owner"], autocommit=True) as conn:  # even with a password, as a check
        set_password(conn, UPKEEP_ROLE, "upkeep-password-for-the-test")
    login = conninfo_to_dict(urls["restaurant_ingest"]) | {"user": UPKEEP_ROLE,
                                                           "password": "upkeep-password-for-the-test"}
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(**login)
    owners = query(urls["owner"], OWNERS, (ORDERS_TABLES, UPKEEP_ROLE))
    assert (True, True) in owners and (False, True) not in owners and (True, False) not in owners
    may = set(query(urls["owner"], UPKEEP_RIGHTS, (UPKEEP_ROLE, ORDERS_TABLES)))
    assert ("order_keys", "DELETE") in may and ("report_sales", "DELETE") in may
    assert {right for _, right in may} == {"SELECT", "DELETE"}
    assert not {table for table, _ in may} & {"stores", "schema_migrations", "report_staging", "report_scope"}
    assert query(urls["owner"], MEMBERSHIPS, (UPKEEP_ROLE,)) == []  # no pg_read_server_files, no one's rights


def test_a_role_that_may_not_migrate_says_what_to_do(stack: ScratchStack, urls: dict[str, str]):
    """A worker given a least-privileged DATABASE_URL before the migrations ran."""
    name = conninfo_to_dict(stack.new_database("unmigrated"))["dbname"]
    ingest = stack.postgres.role_url("restaurant_ingest", name)
    with pytest.raises(MigrationsRefused, match=r"may not apply them .*-m restaurant_app.admin migrate"):
        asyncio.run(Database(ingest).migrate())


def test_a_deleted_key_takes_its_stored_lines_never_a_temporary_table_s(urls: dict[str, str]):
    """Migrations 029 and 035: the triggers name public's tables, so a session's temporary table
    of the same name (found first on its search_path) is left alone."""
    order = OrderGenerator(seed=3535).order()
    assert asyncio.run(save_orders(urls["owner"], [order])) == 1
    with psycopg.connect(urls["owner"]) as conn:
        for table in ("orders", "order_items"):
            conn.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT * FROM {} WHERE order_id = %s").format(
                sql.Identifier(table), sql.Identifier("public", table)), (order.order_id,))
        conn.execute("DELETE FROM public.order_keys WHERE order_id = %s", (order.order_id,))
        left = [conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE order_id = %s").format(
                    sql.Identifier(schema, table)), (order.order_id,)).fetchone()[0]
                for schema in ("public", "pg_temp") for table in ("orders", "order_items")]
    assert left == [0, 0, 1, len(order.items)]


def test_a_migrating_role_that_is_no_superuser_hands_the_orders_tables_to_the_upkeep_role(
        stack: ScratchStack, urls: dict[str, str]):
    """As on a managed PostgreSQL, whose administrator is no superuser: it has CREATEROLE, owns the
    database and may grant restaurant_upkeep (made by ``urls``' migrations: as its maker, it would)."""
    migrator = f"migrator_{uuid.uuid4().hex[:8]}"
    name, password = f"by_{migrator}", "migrator-password-for-the-test"
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} CREATEROLE").format(sql.Identifier(migrator)))
        set_password(conn, migrator, password, login=True)
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (name, migrator))))
        conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(*map(sql.Identifier, (UPKEEP_ROLE,
                                                                                               migrator))))
    owner = conninfo_to_dict(stack.postgres.url(name)) | {"user": migrator, "password": password}
    asyncio.run(Database(make_conninfo(**owner)).migrate())
    stack.postgres.enable_roles(name)
    ingest = stack.postgres.role_url("restaurant_ingest", name)
    owner_of = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s"
    assert query(ingest, owner_of, ("orders",)) == [(UPKEEP_ROLE,)]
    assert query(ingest, "SELECT upkeep_add_day('2030-01-01')") == [(0,)]
    assert query(ingest, owner_of, ("orders_p20300101",)) == [(UPKEEP_ROLE,)]
