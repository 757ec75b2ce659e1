-- The dashboard counts and lists the last hour's rejections every few seconds; without an
-- index that reads every rejection ever recorded.
CREATE INDEX rejected_orders_rejected_at_idx ON rejected_orders (rejected_at);
