-- Spark stages every report row of a run in one table, with one write. Five tables took five
-- writes: five Spark jobs, each with its own JDBC connections. The five names stay, as views
-- of the rows of their kind, so the publish step reads them as before.
DROP TABLE report_staging_sales, report_staging_dishes, report_staging_customers,
           report_staging_insights, report_staging_evaluations;

CREATE UNLOGGED TABLE report_staging (
    staged                  text          NOT NULL
        CHECK (staged IN ('sales', 'dishes', 'customers', 'insights', 'evaluations')),
    granularity             text,
    period_start            timestamptz,
    period_end              timestamptz,
    orders                  bigint,
    items_sold              bigint,
    gross_revenue           numeric(16,2),
    avg_ticket              numeric(16,2),
    unique_customers        bigint,
    avg_spend_per_customer  numeric(16,2),
    top_dish                text,
    top_dish_quantity       bigint,
    revenue_by_channel      jsonb,
    revenue_by_payment      jsonb,
    dish                    text,
    quantity                bigint,
    revenue                 numeric(16,2),
    rank                    integer,
    customer_id             bigint,
    kind                    text,
    window_start            timestamptz,
    window_end              timestamptz,
    subject                 text,
    message                 text,
    figures                 jsonb
);

CREATE VIEW report_staging_sales AS
SELECT granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
       unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
       revenue_by_channel, revenue_by_payment
FROM report_staging WHERE staged = 'sales';

CREATE VIEW report_staging_dishes AS
SELECT granularity, period_start, dish, quantity, revenue, rank
FROM report_staging WHERE staged = 'dishes';

CREATE VIEW report_staging_customers AS
SELECT granularity, period_start, customer_id
FROM report_staging WHERE staged = 'customers';

CREATE VIEW report_staging_insights AS
SELECT kind, window_start, window_end, subject, message, figures
FROM report_staging WHERE staged = 'insights';

CREATE VIEW report_staging_evaluations AS
SELECT kind, window_start
FROM report_staging WHERE staged = 'evaluations';
