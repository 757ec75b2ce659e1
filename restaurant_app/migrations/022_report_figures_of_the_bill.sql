-- The report figures of a whole bill (issue #21; README "Report figures"): gross and net sales,
-- discounts, service charge (all of it, and the part that is revenue), delivery fees, tips,
-- cancellations and refunds (counted in their order's window), net revenue, and what was paid
-- by each method. Windows stored before had only version 1 orders and no events: their gross
-- and net sales and net revenue are their revenue, and what was paid by method is their revenue
-- by payment method. corrected_at: when a run last changed the window after it was final.
ALTER TABLE report_sales
    ADD COLUMN gross_sales numeric(24,2),
    ADD COLUMN discounts numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN net_sales numeric(24,2),
    ADD COLUMN service_charge numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN service_charge_revenue numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN delivery_fees numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN tips numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN cancellations numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN refunds numeric(24,2) NOT NULL DEFAULT 0,
    ADD COLUMN net_revenue numeric(24,2),
    ADD COLUMN payments_by_method jsonb,
    ADD COLUMN corrected_at timestamptz;
UPDATE report_sales SET gross_sales = gross_revenue, net_sales = gross_revenue, net_revenue = gross_revenue,
                        payments_by_method = revenue_by_payment;
ALTER TABLE report_sales
    ALTER COLUMN gross_sales SET NOT NULL,
    ALTER COLUMN net_sales SET NOT NULL,
    ALTER COLUMN net_revenue SET NOT NULL,
    ALTER COLUMN payments_by_method SET NOT NULL;

ALTER TABLE report_staging
    ADD COLUMN gross_sales numeric(24,2),
    ADD COLUMN discounts numeric(24,2),
    ADD COLUMN net_sales numeric(24,2),
    ADD COLUMN service_charge numeric(24,2),
    ADD COLUMN service_charge_revenue numeric(24,2),
    ADD COLUMN delivery_fees numeric(24,2),
    ADD COLUMN tips numeric(24,2),
    ADD COLUMN cancellations numeric(24,2),
    ADD COLUMN refunds numeric(24,2),
    ADD COLUMN net_revenue numeric(24,2),
    ADD COLUMN payments_by_method jsonb;

-- The staged sales are every column the staging table shares with report_sales, whatever other
-- migrations added to both.
DO $$
DECLARE
    columns text;
BEGIN
    SELECT string_agg(quote_ident(s.attname), ', ' ORDER BY s.attnum) INTO columns
    FROM pg_attribute s
    JOIN pg_attribute r ON r.attrelid = 'report_sales'::regclass AND r.attname = s.attname
                       AND r.attnum > 0 AND NOT r.attisdropped
    WHERE s.attrelid = 'report_staging'::regclass AND s.attnum > 0 AND NOT s.attisdropped;
    DROP VIEW report_staging_sales;
    EXECUTE format('CREATE VIEW report_staging_sales AS SELECT %s FROM report_staging WHERE staged = %L',
                   columns, 'sales');
END
$$;
