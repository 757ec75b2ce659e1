"""The chain's stores: the list the dashboard's picker offers, and the check that a ``store``
parameter names one of them.

A store is known once its first order is stored (the worker adds it to ``stores``, migration
031), before the report job has published any report of it; the chain (``store`` absent or
empty) is always known.
"""

from restaurant_app.database import Database
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.web.endpoint import BadParameter

KNOWN_STORE = "SELECT EXISTS (SELECT FROM stores WHERE store_id = %s) AS known"
STORES = "SELECT store_id FROM stores ORDER BY store_id"


async def checked_store(db: Database, store: str) -> str:
    """``store`` if it is the chain or a store with orders; else BadParameter (a 400) saying so."""
    if store != CHAIN_STORE and not (await db.fetch_all(KNOWN_STORE, (store,)))[0]["known"]:
        raise BadParameter(f"no store {store!r} has any order yet;"
                           " /api/dashboard/stores lists those that do")
    return store


async def known_stores(db: Database) -> list[str]:
    """The stores with orders, by id."""
    return [row["store_id"] for row in await db.fetch_all(STORES)]
