-- Least privilege: a role for each kind of work, none of them able to change the schema.
-- restaurant_ingest stores orders and rejections; restaurant_reports reads the orders and
-- writes the reports; restaurant_web only reads. They are created without LOGIN: `make run`
-- (infra) gives each a password of its own and LOGIN; elsewhere an administrator does
-- (`ALTER ROLE restaurant_web LOGIN PASSWORD '...'`). The migrations and the admin command
-- keep running as the owner of the tables. Roles belong to the whole server, so a second
-- database on it finds them made already.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['restaurant_ingest', 'restaurant_reports', 'restaurant_web'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                           role_name);
        END IF;
    END LOOP;
END
$$;

-- Nobody but the owner creates anything in the schema (PostgreSQL 15 and later already say so).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO restaurant_ingest, restaurant_reports, restaurant_web;

-- The worker: orders in, rejections in and marked dead-lettered, and what /health reads.
GRANT SELECT, INSERT ON order_keys, orders, order_items TO restaurant_ingest;
GRANT SELECT, INSERT, UPDATE ON rejected_orders TO restaurant_ingest;
GRANT SELECT, INSERT, UPDATE ON report_runs TO restaurant_ingest;  -- a job that died unrecorded
GRANT SELECT ON report_sales, report_dishes, report_insights, report_skipped_windows,
    schema_migrations TO restaurant_ingest;

-- The report job: the orders, and every report table and its own work tables.
GRANT SELECT ON order_keys, orders, order_items, schema_migrations TO restaurant_reports;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON report_sales, report_dishes, report_customers,
    report_insights, report_runs, report_skipped_windows, report_scope, report_staging
    TO restaurant_reports;
GRANT SELECT ON report_staging_sales, report_staging_dishes, report_staging_customers,
    report_staging_insights, report_staging_evaluations TO restaurant_reports;

-- The web: read only, tables made by later migrations included.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO restaurant_web;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO restaurant_web;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO restaurant_ingest, restaurant_reports;
