-- What each role of migration 023 may do, granted again after every run of migrations that
-- applied one (restaurant_app/database.py), so that a table a later migration adds is granted
-- here, beside the others. tests/test_database_roles.py checks every table is named here.

GRANT USAGE ON SCHEMA public TO restaurant_ingest, restaurant_reports, restaurant_web;

-- The worker: orders and their events in, rejections in and marked dead-lettered, a job that
-- died unrecorded, and what /health reads.
GRANT SELECT, INSERT ON order_keys, orders, order_items, order_events, stores TO restaurant_ingest;
-- Only for the row lock that judges an order's events one after the other (SELECT … FOR UPDATE
-- needs an UPDATE privilege); a trigger (migration 029) refuses any change of a key.
GRANT UPDATE (order_id) ON order_keys TO restaurant_ingest;
GRANT SELECT, INSERT, UPDATE ON rejected_orders, report_runs TO restaurant_ingest;
GRANT SELECT ON report_sales, report_dishes, report_insights, report_skipped_windows,
    schema_migrations TO restaurant_ingest;
-- The day partitions' upkeep and the retentions, only through migration 024's functions.
GRANT EXECUTE ON FUNCTION upkeep_default_days(), upkeep_add_day(date), upkeep_drop_day(date),
    upkeep_delete_old(text, timestamptz, integer) TO restaurant_ingest;

-- Migration 034's owner of the upkeep functions (and of orders and order_items): what the
-- retentions delete, and the keys the moved orders are checked against (migration 029's trigger).
GRANT SELECT, DELETE ON order_keys, order_events, report_customers, rejected_orders, report_runs,
    report_insights, report_sales, report_dishes TO restaurant_upkeep;

-- The report job: the orders and their events, and every report table and its work tables.
GRANT SELECT ON order_keys, orders, order_items, order_events, schema_migrations TO restaurant_reports;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON report_sales, report_dishes, report_customers,
    report_period_customers, report_insights, report_runs, report_skipped_windows, report_scope,
    report_staging TO restaurant_reports;
GRANT SELECT ON report_staging_sales, report_staging_dishes, report_staging_customers,
    report_staging_insights, report_staging_evaluations TO restaurant_reports;

-- The web: read only, tables made later by the same owner (by hand, say) included.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO restaurant_web;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO restaurant_web;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO restaurant_ingest, restaurant_reports;
