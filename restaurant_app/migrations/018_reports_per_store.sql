-- Reports per store and for the whole chain (issue #20). Every report row names its store in
-- store_id; the chain's rows, over every store's orders, have store_id '' (CHAIN_STORE in
-- restaurant_app/report_tables.py): a store's id is never empty (docs/ORDER_CONTRACT.md).
-- The rows stored before are the chain's.
ALTER TABLE report_sales ADD COLUMN store_id text NOT NULL DEFAULT '';
ALTER TABLE report_sales DROP CONSTRAINT report_sales_pkey,
    ADD PRIMARY KEY (granularity, period_start, store_id);
-- A store's own reports, read by store (the dashboard, /reports?store=).
CREATE INDEX report_sales_store_idx ON report_sales (store_id, granularity, period_start);

ALTER TABLE report_dishes ADD COLUMN store_id text NOT NULL DEFAULT '';
ALTER TABLE report_dishes DROP CONSTRAINT report_dishes_pkey,
    ADD PRIMARY KEY (granularity, period_start, store_id, dish);

ALTER TABLE report_customers ADD COLUMN store_id text NOT NULL DEFAULT '';
ALTER TABLE report_customers DROP CONSTRAINT report_customers_pkey,
    ADD PRIMARY KEY (granularity, period_start, store_id, customer_id);

ALTER TABLE report_insights ADD COLUMN store_id text NOT NULL DEFAULT '';
ALTER TABLE report_insights DROP CONSTRAINT report_insights_pkey,
    ADD PRIMARY KEY (store_id, kind, window_start, subject);
CREATE INDEX report_insights_store_window_idx ON report_insights (store_id, window_start);

-- A window of one store's orders only is also that store's report: copy it as the store's row,
-- so that single-store restaurants keep their history per store and later runs add up whole
-- hours and days. Windows of several stores get their stores' rows when recomputed (a range
-- rebuild: python -m spark_reports --from DAY --to DAY). Insights per store start with the
-- next runs.
CREATE TEMPORARY TABLE one_store_windows AS
SELECT granularity, period_start, (SELECT k FROM jsonb_object_keys(revenue_by_store) AS k) AS store
FROM report_sales
WHERE store_id = '' AND (SELECT count(*) FROM jsonb_object_keys(revenue_by_store)) = 1;

CREATE TEMPORARY TABLE store_rows AS
SELECT r.* FROM report_sales r JOIN one_store_windows w USING (granularity, period_start);
UPDATE store_rows r SET store_id = w.store FROM one_store_windows w
WHERE w.granularity = r.granularity AND w.period_start = r.period_start;
INSERT INTO report_sales SELECT * FROM store_rows;
DROP TABLE store_rows;

CREATE TEMPORARY TABLE store_rows AS
SELECT r.* FROM report_dishes r JOIN one_store_windows w USING (granularity, period_start);
UPDATE store_rows r SET store_id = w.store FROM one_store_windows w
WHERE w.granularity = r.granularity AND w.period_start = r.period_start;
INSERT INTO report_dishes SELECT * FROM store_rows;
DROP TABLE store_rows;

CREATE TEMPORARY TABLE store_rows AS
SELECT r.* FROM report_customers r JOIN one_store_windows w USING (granularity, period_start);
UPDATE store_rows r SET store_id = w.store FROM one_store_windows w
WHERE w.granularity = r.granularity AND w.period_start = r.period_start;
INSERT INTO report_customers SELECT * FROM store_rows;
DROP TABLE store_rows;
DROP TABLE one_store_windows;

-- Spark stages each row with its store.
ALTER TABLE report_staging ADD COLUMN store_id text;
CREATE OR REPLACE VIEW report_staging_sales AS
SELECT granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
       unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
       revenue_by_channel, revenue_by_payment, identified_revenue, revenue_by_store, store_id
FROM report_staging WHERE staged = 'sales';
CREATE OR REPLACE VIEW report_staging_dishes AS
SELECT granularity, period_start, dish, quantity, revenue, rank, store_id
FROM report_staging WHERE staged = 'dishes';
CREATE OR REPLACE VIEW report_staging_customers AS
SELECT granularity, period_start, customer_id, store_id
FROM report_staging WHERE staged = 'customers';
CREATE OR REPLACE VIEW report_staging_insights AS
SELECT kind, window_start, window_end, subject, message, figures, store_id
FROM report_staging WHERE staged = 'insights';

-- The original design's view stays the chain's minutes.
CREATE OR REPLACE VIEW relatorio_vendas AS
SELECT period_start            AS periodo,
       gross_revenue           AS total_vendas,
       top_dish                AS prato_mais_vendido,
       items_sold              AS quantidade_total,
       avg_ticket              AS ticket_medio,
       computed_at             AS created_at,
       avg_spend_per_customer  AS gasto_medio_por_cliente
FROM report_sales
WHERE granularity = 'minute' AND store_id = '';

-- The same view per store: a chain's stores, minute by minute (loja: the store's id).
CREATE VIEW relatorio_vendas_por_loja AS
SELECT store_id                AS loja,
       period_start            AS periodo,
       gross_revenue           AS total_vendas,
       top_dish                AS prato_mais_vendido,
       items_sold              AS quantidade_total,
       avg_ticket              AS ticket_medio,
       computed_at             AS created_at,
       avg_spend_per_customer  AS gasto_medio_por_cliente
FROM report_sales
WHERE granularity = 'minute' AND store_id <> '';
