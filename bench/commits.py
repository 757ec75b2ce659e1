"""When the rows of a benchmark database were committed, from PostgreSQL's commit timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# pg_xact_commit_timestamp needs track_commit_timestamp = on, which bench.stack sets.
COMMITS = """
WITH o AS (SELECT xmin::text AS tx, count(*) AS n FROM orders GROUP BY 1),
     i AS (SELECT xmin::text AS tx, count(*) AS n FROM order_items GROUP BY 1)
SELECT extract(epoch FROM pg_xact_commit_timestamp(o.tx::xid))::float8, o.n, coalesce(i.n, 0)
FROM o LEFT JOIN i USING (tx)
ORDER BY 1
"""

ORDER_COMMITS = """
SELECT order_id::text, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM orders
"""


@dataclass(frozen=True)
class Commit:
    at: float
    """Wall-clock seconds since the epoch."""
    orders: int
    items: int


@dataclass(frozen=True)
class Timeline:
    """Every transaction that stored orders, in commit order."""

    commits: list[Commit]

    @property
    def first(self) -> float:
        return self.commits[0].at

    @property
    def last(self) -> float:
        return self.commits[-1].at

    @property
    def window(self) -> float:
        """Seconds from the first commit to the last."""
        return self.last - self.first

    def rates(self) -> tuple[float, float]:
        """Orders/s and rows/s (orders + items) committed after the first commit, over the window.

        The first transaction's rows are left out: they were processed before the window began.
        """
        later = self.commits[1:]
        if not later or self.window <= 0:
            raise ValueError("need at least two commits to measure a rate")
        orders = sum(c.orders for c in later)
        rows = orders + sum(c.items for c in later)
        return orders / self.window, rows / self.window


def commit_timeline(database_url: str) -> Timeline:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(COMMITS).fetchall()
    return Timeline([Commit(at, orders, items) for at, orders, items in rows])


def order_commit_times(database_url: str) -> dict[str, float]:
    """Each stored order's id and the wall-clock time its transaction committed."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute(ORDER_COMMITS).fetchall())
