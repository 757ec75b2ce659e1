-- Orders as they arrive from Kafka, one row per order and one per order line.
CREATE TABLE orders (
    order_id        uuid PRIMARY KEY,
    created_at      timestamptz   NOT NULL,
    customer_id     bigint        NOT NULL,
    customer_name   text          NOT NULL,
    channel         text          NOT NULL,
    payment_method  text          NOT NULL,
    total           numeric(12,2) NOT NULL CHECK (total > 0),
    ingested_at     timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX orders_created_at_idx ON orders (created_at);
CREATE INDEX orders_ingested_at_idx ON orders (ingested_at);

CREATE TABLE order_items (
    order_id    uuid          NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no     smallint      NOT NULL,
    dish        text          NOT NULL,
    category    text          NOT NULL,
    unit_price  numeric(10,2) NOT NULL CHECK (unit_price > 0),
    quantity    integer       NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line_no)
);

-- Messages that could not be accepted as orders, kept byte for byte with the reason.
CREATE TABLE rejected_orders (
    id            bigserial PRIMARY KEY,
    topic         text        NOT NULL,
    kafka_partition integer   NOT NULL,
    kafka_offset  bigint      NOT NULL,
    raw           bytea       NOT NULL,
    reason        text        NOT NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);

-- The original design's table, one row per item sold, kept as a view.
CREATE VIEW pedidos AS
SELECT o.order_id      AS pedido_id,
       i.dish          AS nome_prato,
       i.unit_price    AS preco,
       i.quantity      AS quantidade,
       o.customer_id   AS cliente_id,
       o.created_at    AS created_at
FROM orders o
JOIN order_items i USING (order_id);
