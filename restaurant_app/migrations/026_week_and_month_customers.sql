-- The unique customers of each week (from Monday) and month, kept by the report job as it
-- publishes days, so that the dashboard's history reads one row per period instead of counting
-- distinct customers over a month of days. The job also keeps each period's customers in
-- report_customers (granularity 'week' and 'month') to know who is new to it; the count stays
-- when retention deletes those customers, as a day's count stays in report_sales.
-- Periods published before this migration have no row until a run publishes one of their days
-- (it then counts the period from its days' customers); until then the history counts them
-- from report_customers, as before.
CREATE TABLE report_period_customers (
    granularity       text        NOT NULL CHECK (granularity IN ('week', 'month')),
    period_start      timestamptz NOT NULL,
    unique_customers  bigint      NOT NULL,
    PRIMARY KEY (granularity, period_start)
);
