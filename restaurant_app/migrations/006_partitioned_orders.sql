-- Orders and their lines, range-partitioned by the UTC day of the order's created_at: a query
-- for some minutes or days reads only those days' partitions, and an old day can be detached
-- whole. restaurant_app/partitions.py creates the days ahead and moves rows that landed in the
-- default partition (a created_at with no day partition yet) into their day.
--
-- A partitioned table's unique keys must include its partition column, so order_id alone can
-- no longer be orders' primary key. order_keys, unpartitioned, holds each order_id once with its
-- created_at: the save path (agents/order_sink.py) inserts an order's key first, ON CONFLICT
-- (order_id) DO NOTHING, and the order only when its key is new; the foreign key from orders
-- (order_id, created_at) to order_keys lets no order in without its key. So no two orders share
-- an order_id, whatever their created_at, even when two workers store the same id at once.
--
-- order_items has no created_at of its own: each line carries its order's, as
-- order_created_at, so that it lives in its order's day. The other name keeps older joins
-- such as "order_items JOIN orders USING (order_id) WHERE created_at ..." unambiguous.
-- Its foreign key is to order_keys, not to orders: checking a reference into a partitioned
-- table costs about twice the whole insert of a batch, and the key pins the line to its
-- order's id and day just as well. Delete an order by deleting its key: that deletes the
-- order and its lines (ON DELETE CASCADE); an old day goes by dropping its two partitions.
--
-- The tables are rebuilt from whatever columns, defaults, checks and indexes they have when
-- this runs (LIKE ... INCLUDING ALL, and every index but the primary key re-created from its
-- definition), so columns and indexes added by earlier migrations come along. A trigger, or a
-- view other than pedidos on these tables, makes it stop rather than drop them.
--
-- Last, report_scope becomes a logged table: a hot-standby replica cannot read unlogged
-- tables, and the report job's reads on REPORTS_DATABASE_URL join it.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgrelid IN ('orders'::regclass, 'order_items'::regclass) AND NOT tgisinternal) THEN
        RAISE EXCEPTION 'orders or order_items has a trigger, which 006_partitioned_orders would not carry over';
    END IF;
END $$;

-- Every index but the primary keys, as defined now (the definitions name the tables orders and
-- order_items, which is what the new tables will be called).
CREATE TEMP TABLE carried_indexes ON COMMIT DROP AS
SELECT pg_get_indexdef(indexrelid) AS definition
FROM pg_index
WHERE indrelid IN ('orders'::regclass, 'order_items'::regclass) AND NOT indisprimary;

DROP VIEW pedidos;
ALTER TABLE order_items RENAME TO order_items_unpartitioned;
ALTER TABLE orders RENAME TO orders_unpartitioned;

CREATE TABLE order_keys (
    order_id    uuid        NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE orders (LIKE orders_unpartitioned INCLUDING ALL EXCLUDING INDEXES)
PARTITION BY RANGE (created_at);

CREATE TABLE order_items (
    LIKE order_items_unpartitioned INCLUDING ALL EXCLUDING INDEXES,
    order_created_at timestamptz NOT NULL
) PARTITION BY RANGE (order_created_at);

CREATE TABLE orders_default PARTITION OF orders DEFAULT;
CREATE TABLE order_items_default PARTITION OF order_items DEFAULT;

-- One partition per day that has orders (the worker adds the days ahead), then the rows.
-- Generated columns are left to compute themselves.
DO $$
DECLARE
    day date;
    order_columns text;
    item_columns text;
    moved bigint;
BEGIN
    FOR day IN SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM orders_unpartitioned LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF orders FOR VALUES FROM (%L) TO (%L)',
                       'orders_p' || to_char(day, 'YYYYMMDD'),
                       day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE %I PARTITION OF order_items FOR VALUES FROM (%L) TO (%L)',
                       'order_items_p' || to_char(day, 'YYYYMMDD'),
                       day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO order_columns
    FROM pg_attribute
    WHERE attrelid = 'orders_unpartitioned'::regclass AND attnum > 0 AND NOT attisdropped
      AND attgenerated = '';
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO item_columns
    FROM pg_attribute
    WHERE attrelid = 'order_items_unpartitioned'::regclass AND attnum > 0 AND NOT attisdropped
      AND attgenerated = '';

    INSERT INTO order_keys (order_id, created_at) SELECT order_id, created_at FROM orders_unpartitioned;
    EXECUTE format('INSERT INTO orders (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM orders_unpartitioned',
                   order_columns, order_columns);
    EXECUTE format('INSERT INTO order_items (%s, order_created_at) OVERRIDING SYSTEM VALUE'
                   ' SELECT %s, o.created_at FROM order_items_unpartitioned i'
                   ' JOIN orders_unpartitioned o ON o.order_id = i.order_id',
                   item_columns, 'i.' || replace(item_columns, ', ', ', i.'));
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved <> (SELECT count(*) FROM order_items_unpartitioned) THEN
        RAISE EXCEPTION 'copied % order lines of %', moved, (SELECT count(*) FROM order_items_unpartitioned);
    END IF;
END $$;

DROP TABLE order_items_unpartitioned;
DROP TABLE orders_unpartitioned;

ALTER TABLE order_keys
    ADD CONSTRAINT order_keys_pkey PRIMARY KEY (order_id),
    ADD CONSTRAINT order_keys_order_id_created_at_key UNIQUE (order_id, created_at);
ALTER TABLE orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id, created_at),
    ADD CONSTRAINT orders_order_keys_fkey FOREIGN KEY (order_id, created_at)
        REFERENCES order_keys (order_id, created_at) ON DELETE CASCADE;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_pkey PRIMARY KEY (order_id, order_created_at, line_no),
    ADD CONSTRAINT order_items_order_keys_fkey FOREIGN KEY (order_id, order_created_at)
        REFERENCES order_keys (order_id, created_at) ON DELETE CASCADE;

DO $$
DECLARE
    definition text;
BEGIN
    FOR definition IN SELECT c.definition FROM carried_indexes c LOOP
        EXECUTE definition;
    END LOOP;
END $$;

-- The original design's table, one row per item sold, kept as a view.
CREATE VIEW pedidos AS
SELECT o.order_id      AS pedido_id,
       i.dish          AS nome_prato,
       i.unit_price    AS preco,
       i.quantity      AS quantidade,
       o.customer_id   AS cliente_id,
       o.created_at    AS created_at
FROM orders o
JOIN order_items i ON i.order_id = o.order_id AND i.order_created_at = o.created_at;

ALTER TABLE report_scope SET LOGGED;
