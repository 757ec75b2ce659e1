"""The peer of issue #12: a Quix Streams application with its stock PostgreSQLSink.

It stores the rows the worker stores, one ``orders`` row per order and one ``order_items`` row
per line, with ``ON CONFLICT DO NOTHING`` on the same keys, into the tables the bench made, as
the worker stores into the tables its migrations made: ``schema_auto_update=False``, which Quix
documents for tables that exist (left on, each write runs ``ALTER TABLE ... ADD COLUMN IF NOT
EXISTS``, whose exclusive table lock makes two processes' writes wait for each other). Its
checkpoints, which write the sinks' batches, come every ``COMMIT_EVERY`` messages (Quix's
``commit_every``, which its docs name to bound a sink's batches) or ``COMMIT_INTERVAL`` seconds.
Run by ``bench/quix_peer.py`` with the Python of a virtualenv that has ``quixstreams[postgresql]``;
it imports nothing of ours.
"""
import os
from datetime import datetime
from decimal import Decimal

from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink


def order_row(order: dict) -> dict:
    return {"order_id": order["order_id"], "created_at": datetime.fromisoformat(order["created_at"]),
            "customer_id": order["customer_id"], "customer_name": order["customer_name"],
            "channel": order["channel"], "payment_method": order["payment_method"],
            "total": Decimal(order["total"])}


def item_rows(order: dict) -> list[dict]:
    return [{"order_id": order["order_id"], "line_no": n, "dish": i["dish"], "category": i["category"],
             "unit_price": Decimal(i["unit_price"]), "quantity": i["quantity"]}
            for n, i in enumerate(order["items"], start=1)]


app = Application(broker_address=os.environ["BROKER"], consumer_group=os.environ["GROUP"],
                  auto_offset_reset="earliest", state_dir=os.environ["STATE_DIR"],
                  commit_every=int(os.environ["COMMIT_EVERY"]),
                  commit_interval=float(os.environ["COMMIT_INTERVAL"]))
sdf = app.dataframe(app.topic(os.environ["TOPIC"], value_deserializer="json"))
login = dict(host="127.0.0.1", port=int(os.environ["PGPORT"]), dbname=os.environ["PGDATABASE"],
             user=os.environ["PGUSER"], password=os.environ["PGPASSWORD"], include_metadata=False,
             on_conflict_do_nothing=True, schema_auto_update=False)
sdf.apply(order_row).sink(PostgreSQLSink(table_name="orders", primary_key_columns="order_id", **login))
sdf.apply(item_rows, expand=True).sink(
    PostgreSQLSink(table_name="order_items", primary_key_columns=["order_id", "line_no"], **login))
app.run()
