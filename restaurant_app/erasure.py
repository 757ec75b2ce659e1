"""Erasing one customer at their request (Brazil's LGPD), from every table that names them.

Orders are anonymised (customer id and name set to NULL, as for an anonymous order) so that the
sales figures stay; the customer's rows in the report tables are deleted; a rejected message that
names them (by name, or by id in a ``customer_id`` field) loses its payload, key and headers, and
the customer's name in its reason. Kafka's own copies (the orders and dead-letter topics) cannot
be edited: they end with the topics' retention.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import psycopg

ERASED = "[erased]"
"""What stands in a rejection's reason where the customer's name was."""

NAMES = "SELECT DISTINCT customer_name FROM orders WHERE customer_id = %s AND customer_name IS NOT NULL"
ANONYMISE_ORDERS = ("UPDATE orders SET customer_id = NULL, customer_name = NULL"
                    " WHERE customer_id = %s OR (customer_id IS NULL AND customer_name = ANY(%s))")
# A week's or month's count (migration 026) loses the customer with their row of it.
DELETE_REPORT_CUSTOMERS = """
WITH gone AS (DELETE FROM report_customers WHERE customer_id = %s RETURNING granularity, period_start),
fewer AS (UPDATE report_period_customers p SET unique_customers = p.unique_customers - 1 FROM gone g
          WHERE p.granularity = g.granularity AND p.period_start = g.period_start)
SELECT count(*) FROM gone
"""
DELETE_STAGED_CUSTOMERS = "DELETE FROM report_staging WHERE customer_id = %s"
DELETE_INSIGHTS = """
DELETE FROM report_insights
WHERE EXISTS (SELECT FROM unnest(%(names)s::text[]) AS name
              WHERE strpos(subject, name) > 0 OR strpos(coalesce(message, ''), name) > 0
                 OR strpos(figures::text, name) > 0)
"""
REJECTED_CANDIDATES = """
SELECT id, raw, message_key, header_values, reason FROM rejected_orders r
WHERE erased_at IS NULL
  AND EXISTS (SELECT FROM unnest(%(needles)s::bytea[]) AS needle
              WHERE position(needle IN r.raw) > 0
                 OR position(needle IN coalesce(r.message_key, ''::bytea)) > 0
                 OR position(needle IN convert_to(r.reason, 'UTF8')) > 0
                 OR EXISTS (SELECT FROM unnest(r.header_values) AS value
                            WHERE position(needle IN value) > 0))
"""
ERASE_REJECTED = """
UPDATE rejected_orders
SET raw = ''::bytea, raw_length = octet_length(raw), message_key = NULL, header_names = NULL,
    header_values = NULL, reason = %s, erased_at = now()
WHERE id = %s
"""


@dataclass
class Erasure:
    """What erasing one customer changed (or, in a dry run, would change)."""

    customer_id: int
    names: list[str] = field(default_factory=list)
    orders: int = 0
    rejected_messages: int = 0
    report_rows: int = 0
    insights: int = 0

    def describe(self, dry_run: bool) -> str:
        verb = "Would erase" if dry_run else "Erased"
        return (f"{verb} customer {self.customer_id} ({len(self.names)} name(s) found):"
                f" {self.orders} order(s) anonymised, {self.rejected_messages} rejected message(s)"
                f" emptied, {self.report_rows} report row(s) and {self.insights} insight(s) deleted.")


def name_needles(names: list[str]) -> set[bytes]:
    """Each name as UTF-8 and as JSON writes it with ASCII escapes (``\\u00e3`` for ``ã``)."""
    return {form for name in names if name.strip()
            for form in (name.encode(), json.dumps(name)[1:-1].encode())}


def needles(customer_id: int, names: list[str]) -> list[bytes]:
    """What makes a rejected message a candidate: a name, or the id's digits (checked afterwards)."""
    return sorted(name_needles(names) | {str(customer_id).encode()})


def names_customer(data: bytes, customer_id: int, names: list[str]) -> bool:
    """Whether ``data`` names the customer: one of their names, or their id as ``customer_id``."""
    if any(needle in data for needle in name_needles(names)):
        return True
    return re.search(rb'"customer_id"\s*:\s*"?%d(?![0-9.])' % customer_id, data) is not None


def without_names(reason: str, names: list[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        reason = reason.replace(name, ERASED)
    return reason


async def erase_customer(conn: psycopg.AsyncConnection, customer_id: int, also_named: list[str],
                         *, dry_run: bool) -> Erasure:
    """Erase the customer in one transaction, rolled back when ``dry_run``; say what it changed."""
    erasure = Erasure(customer_id)
    async with conn.transaction(force_rollback=dry_run):
        known = [row[0] for row in await (await conn.execute(NAMES, (customer_id,))).fetchall()]
        erasure.names = sorted({*known, *(name for name in also_named if name)})
        erasure.orders = (await conn.execute(ANONYMISE_ORDERS, (customer_id, erasure.names))).rowcount
        report_rows = (await (await conn.execute(DELETE_REPORT_CUSTOMERS, (customer_id,))).fetchone())[0]
        staged_rows = (await conn.execute(DELETE_STAGED_CUSTOMERS, (customer_id,))).rowcount
        erasure.report_rows = report_rows + staged_rows
        erasure.insights = (await conn.execute(DELETE_INSIGHTS, {"names": erasure.names})).rowcount
        erasure.rejected_messages = await erase_rejections(conn, customer_id, erasure.names)
    return erasure


async def erase_rejections(conn: psycopg.AsyncConnection, customer_id: int, names: list[str]) -> int:
    """Empty every rejected message that names the customer; return how many."""
    cursor = await conn.execute(REJECTED_CANDIDATES, {"needles": needles(customer_id, names)})
    erased = 0
    for row_id, raw, key, header_values, reason in await cursor.fetchall():
        parts = [raw, key or b"", *(header_values or []), reason.encode()]
        if any(names_customer(part, customer_id, names) for part in parts if part):
            await conn.execute(ERASE_REJECTED, (without_names(reason, names), row_id))
            erased += 1
    return erased
