-- A rejected message's key and headers, kept beside its value, as they came (names as bytes),
-- and the value's full length when only its first bytes are kept (raw_length; NULL: raw is whole).
ALTER TABLE rejected_orders
    ADD COLUMN message_key bytea,
    ADD COLUMN header_names bytea[],
    ADD COLUMN header_values bytea[],
    ADD COLUMN raw_length bigint;
