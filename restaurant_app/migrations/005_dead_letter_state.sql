-- When each rejection reached the dead-letter topic; NULL until it has. Rows from before this
-- migration were published before they were stored, so they count as dead-lettered.
ALTER TABLE rejected_orders ADD COLUMN dead_lettered_at timestamptz;
UPDATE rejected_orders SET dead_lettered_at = rejected_at;
CREATE INDEX rejected_orders_not_dead_lettered_idx ON rejected_orders (id) WHERE dead_lettered_at IS NULL;
