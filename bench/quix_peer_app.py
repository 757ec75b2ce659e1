"""The peer of issue #12: a Quix Streams application with its stock PostgreSQLSink.

It stores the rows the worker stores, one ``orders`` row per order and one ``order_items`` row
per line, with ``ON CONFLICT DO NOTHING`` on the same keys. Run by ``bench/quix_peer.py`` with
the Python of a virtualenv that has ``quixstreams[postgresql]``; it imports nothing of ours.
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
                  auto_offset_reset="earliest")
sdf = app.dataframe(app.topic(os.environ["TOPIC"], value_deserializer="json"))
login = dict(host="127.0.0.1", port=int(os.environ["PGPORT"]), dbname=os.environ["PGDATABASE"],
             user=os.environ["PGUSER"], password=os.environ["PGPASSWORD"], include_metadata=False,
             on_conflict_do_nothing=True)
sdf.apply(order_row).sink(PostgreSQLSink(table_name="orders", primary_key_columns="order_id", **login))
sdf.apply(item_rows, expand=True).sink(
    PostgreSQLSink(table_name="order_items", primary_key_columns=["order_id", "line_no"], **login))
app.run()
