-- The chain's stores (issue #20): a store is known from its first stored order, so that
-- /reports?store= and /api/dashboard/*?store= answer for it at once, not a minute later when
-- the report job first publishes its reports. The worker adds a store in the statement that
-- stores its first order (restaurant_app/order_sink.py); a store stays known once its orders
-- are deleted by retention. The stores of the orders and reports stored before are added here.
CREATE TABLE stores (
    store_id text PRIMARY KEY,
    known_since timestamptz NOT NULL DEFAULT now()
);

INSERT INTO stores (store_id)
SELECT store_id FROM orders
UNION
SELECT store_id FROM report_sales WHERE store_id <> ''
ORDER BY 1;
