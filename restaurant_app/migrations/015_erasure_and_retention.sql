-- A rejected message whose payload was erased at a customer's request (Brazil's LGPD): when.
-- Its raw bytes, key and headers are gone then; its place in the topic and its reason are kept.
ALTER TABLE rejected_orders ADD COLUMN erased_at timestamptz;
