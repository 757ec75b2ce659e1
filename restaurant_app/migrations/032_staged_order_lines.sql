-- Each staged minute row says how many order lines Spark counted in it, so that the publish step
-- adds up the orders and order lines a run read (report_runs.orders_read, rows_read) from the
-- chain's staged minutes: one Spark job fewer a run than counting them in Spark. The staged
-- sales view lists the columns the staging table shares with report_sales, so it is unchanged.
ALTER TABLE report_staging ADD COLUMN order_lines bigint;
