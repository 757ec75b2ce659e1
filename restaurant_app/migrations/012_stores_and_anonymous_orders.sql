-- Orders of a chain's stores, and anonymous orders (issue #20; docs/ORDER_CONTRACT.md).

-- An order names its store; the orders stored before belong to the single store, 'main'.
ALTER TABLE orders ADD COLUMN store_id text NOT NULL DEFAULT 'main';

-- Most restaurant orders name no customer.
ALTER TABLE orders ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE orders ALTER COLUMN customer_name DROP NOT NULL;

-- Anonymous orders count as orders, not as customers: the spend per customer is the revenue of
-- the identified customers' orders over their number, and none when a window has none. Every
-- order stored before named its customer, so the stored windows' identified revenue is their revenue.
ALTER TABLE report_sales ADD COLUMN identified_revenue numeric(16,2);
UPDATE report_sales SET identified_revenue = gross_revenue;
ALTER TABLE report_sales ALTER COLUMN identified_revenue SET NOT NULL;
ALTER TABLE report_sales ALTER COLUMN avg_spend_per_customer DROP NOT NULL;

-- Each window's revenue by store, as by channel and by payment: {"store_id": amount}.
ALTER TABLE report_sales ADD COLUMN revenue_by_store jsonb;
UPDATE report_sales SET revenue_by_store = jsonb_build_object('main', gross_revenue);
ALTER TABLE report_sales ALTER COLUMN revenue_by_store SET NOT NULL;

ALTER TABLE report_staging ADD COLUMN identified_revenue numeric(16,2);
ALTER TABLE report_staging ADD COLUMN revenue_by_store jsonb;
CREATE OR REPLACE VIEW report_staging_sales AS
SELECT granularity, period_start, period_end, orders, items_sold, gross_revenue, avg_ticket,
       unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
       revenue_by_channel, revenue_by_payment, identified_revenue, revenue_by_store
FROM report_staging WHERE staged = 'sales';
