-- Report amounts sized for a busy chain. An order's total is at most 100,000,000.00
-- (validation.py, MAX_TOTAL), so numeric(16,2), whose largest value is 99,999,999,999,999.99,
-- overflowed once about a million such orders fell in one window, and every run touching that
-- day failed. numeric(24,2) holds 10^14 of them: at 25,000 orders a second, over a century.
-- PostgreSQL changes no column type under a view, so the views over these tables are kept,
-- dropped and made again as they were.
DO $$
DECLARE
    names text[];
    definitions text[];
BEGIN
    SELECT array_agg(v.oid::regclass::text), array_agg(pg_get_viewdef(v.oid))
    INTO names, definitions
    FROM pg_class v
    WHERE v.relkind = 'v' AND EXISTS (
        SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class = v.oid AND d.refobjid IN ('report_sales'::regclass, 'report_dishes'::regclass,
                                                    'report_staging'::regclass));
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        EXECUTE format('DROP VIEW %s', names[i]);
    END LOOP;

    ALTER TABLE report_sales
        ALTER COLUMN gross_revenue TYPE numeric(24,2),
        ALTER COLUMN avg_ticket TYPE numeric(24,2),
        ALTER COLUMN avg_spend_per_customer TYPE numeric(24,2),
        ALTER COLUMN identified_revenue TYPE numeric(24,2);
    ALTER TABLE report_dishes ALTER COLUMN revenue TYPE numeric(24,2);
    ALTER TABLE report_staging
        ALTER COLUMN gross_revenue TYPE numeric(24,2),
        ALTER COLUMN avg_ticket TYPE numeric(24,2),
        ALTER COLUMN avg_spend_per_customer TYPE numeric(24,2),
        ALTER COLUMN identified_revenue TYPE numeric(24,2),
        ALTER COLUMN revenue TYPE numeric(24,2);

    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        EXECUTE format('CREATE VIEW %s AS %s', names[i], definitions[i]);
    END LOOP;
END
$$;
