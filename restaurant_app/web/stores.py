"""The chain's stores as the reports know them: the list the dashboard's picker offers, and the
check that a ``store`` parameter names one of them.

A store is known once the report job has published a report of its orders (within a minute of
its first order); the chain (``store`` absent or empty) is always known.
"""

from restaurant_app.database import Database
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.web.endpoint import BadParameter

KNOWN_STORE = "SELECT EXISTS (SELECT FROM report_sales WHERE store_id = %s) AS known"
# Every store with a day report (each report names its day too), on the primary key's range.
STORES = """
SELECT DISTINCT store_id FROM report_sales WHERE granularity = 'day' AND store_id <> %s ORDER BY 1
"""


async def checked_store(db: Database, store: str) -> str:
    """``store`` if it is the chain or a store with reports; else BadParameter (a 400) saying so."""
    if store != CHAIN_STORE and not (await db.fetch_all(KNOWN_STORE, (store,)))[0]["known"]:
        raise BadParameter(f"no store {store!r} has any report yet;"
                           " /api/dashboard/stores lists those that do")
    return store


async def known_stores(db: Database) -> list[str]:
    """The stores with reports, by id."""
    return [row["store_id"] for row in await db.fetch_all(STORES, (CHAIN_STORE,))]
