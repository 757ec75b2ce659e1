-- Cancellations and refunds (issue #21; docs/ORDER_CONTRACT.md, "Cancellations and refunds"):
-- messages of their own kind on the orders topic, each stored once by its event_id once its
-- order is stored. amount: what the event takes back of the order's total; revenue: how much
-- of that was the restaurant's revenue (a cancellation does not take back a service charge that
-- went to the staff). The reports count an event in the window of its own created_at.
CREATE TABLE order_events (
    event_id          uuid          PRIMARY KEY,
    kind              text          NOT NULL CHECK (kind IN ('cancellation', 'refund')),
    order_id          uuid          NOT NULL,
    order_created_at  timestamptz   NOT NULL,
    store_id          text          NOT NULL,
    created_at        timestamptz   NOT NULL,
    amount            numeric(12,2) NOT NULL CHECK (amount >= 0),
    revenue           numeric(12,2) NOT NULL CHECK (revenue >= 0),
    reason            text          NOT NULL,
    lines             smallint[]    NOT NULL DEFAULT '{}',
    ingested_at       timestamptz   NOT NULL DEFAULT clock_timestamp(),
    -- the inserting transaction, as orders.xid: the report job scopes new events by it
    xid               xid8          NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX order_events_order_idx ON order_events (order_id);
CREATE INDEX order_events_created_at_idx ON order_events (created_at);
CREATE INDEX order_events_xid_idx ON order_events (xid);
