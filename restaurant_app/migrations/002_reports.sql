-- Sales reports and insights written by the Spark job (python -m spark_reports).

-- One row per time window with at least one order. Windows are one minute, one hour or one
-- day of the orders' event time (created_at); hours and days follow the restaurant's clock.
CREATE TABLE report_sales (
    granularity             text          NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    period_start            timestamptz   NOT NULL,
    period_end              timestamptz   NOT NULL,
    orders                  bigint        NOT NULL,
    items_sold              bigint        NOT NULL,
    gross_revenue           numeric(16,2) NOT NULL,
    avg_ticket              numeric(16,2) NOT NULL,
    unique_customers        bigint        NOT NULL,
    avg_spend_per_customer  numeric(16,2) NOT NULL,
    top_dish                text          NOT NULL,
    top_dish_quantity       bigint        NOT NULL,
    revenue_by_channel      jsonb         NOT NULL,
    revenue_by_payment      jsonb         NOT NULL,
    computed_at             timestamptz   NOT NULL,
    PRIMARY KEY (granularity, period_start)
);

-- Every dish sold in a window: quantity, revenue and rank (1 = most sold, ties by name).
CREATE TABLE report_dishes (
    granularity   text          NOT NULL,
    period_start  timestamptz   NOT NULL,
    dish          text          NOT NULL,
    quantity      bigint        NOT NULL,
    revenue       numeric(16,2) NOT NULL,
    rank          integer       NOT NULL,
    PRIMARY KEY (granularity, period_start, dish)
);

-- The customers seen in each hour and day: unique customers cannot be added up from minutes.
CREATE TABLE report_customers (
    granularity   text        NOT NULL,
    period_start  timestamptz NOT NULL,
    customer_id   bigint      NOT NULL,
    PRIMARY KEY (granularity, period_start, customer_id)
);

-- Findings in plain language; subject is the dish for dish insights, '' otherwise.
CREATE TABLE report_insights (
    kind          text        NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    subject       text        NOT NULL DEFAULT '',
    message       text        NOT NULL,
    figures       jsonb       NOT NULL,
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (kind, window_start, subject)
);
CREATE INDEX report_insights_window_start_idx ON report_insights (window_start);

-- One row per run of the job. The next incremental run reads the orders ingested after the
-- watermark of the last successful run, less the lateness margin.
CREATE TABLE report_runs (
    run_id           bigserial   PRIMARY KEY,
    mode             text        NOT NULL CHECK (mode IN ('incremental', 'full')),
    status           text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    orders_since     timestamptz,
    watermark        timestamptz NOT NULL,
    windows_written  integer,
    orders_read      bigint,
    rows_read        bigint,
    error            text
);
CREATE INDEX report_runs_succeeded_idx ON report_runs (run_id) WHERE status = 'succeeded';
CREATE INDEX report_runs_running_idx ON report_runs (run_id) WHERE status = 'running';

-- Work tables of the run in progress (only one runs at a time): the windows it recomputes
-- and what Spark computed, moved into the tables above in one transaction.
CREATE UNLOGGED TABLE report_scope (
    kind          text        NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    PRIMARY KEY (kind, period_start)
);

CREATE UNLOGGED TABLE report_staging_sales (LIKE report_sales);
ALTER TABLE report_staging_sales
    ALTER COLUMN unique_customers DROP NOT NULL,
    ALTER COLUMN avg_spend_per_customer DROP NOT NULL,
    DROP COLUMN computed_at;

CREATE UNLOGGED TABLE report_staging_dishes (LIKE report_dishes);
CREATE UNLOGGED TABLE report_staging_customers (LIKE report_customers);

CREATE UNLOGGED TABLE report_staging_insights (LIKE report_insights);
ALTER TABLE report_staging_insights DROP COLUMN computed_at;

CREATE UNLOGGED TABLE report_staging_evaluations (
    kind          text        NOT NULL,
    window_start  timestamptz NOT NULL
);

-- The original design's report table, over the per-minute reports.
CREATE VIEW relatorio_vendas AS
SELECT period_start            AS periodo,
       gross_revenue           AS total_vendas,
       top_dish                AS prato_mais_vendido,
       items_sold              AS quantidade_total,
       avg_spend_per_customer  AS ticket_medio,
       computed_at             AS created_at
FROM report_sales
WHERE granularity = 'minute';
