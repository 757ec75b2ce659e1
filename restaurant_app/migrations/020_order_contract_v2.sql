-- Version 2 of the order message (issue #21; docs/ORDER_CONTRACT.md): discounts, service charge,
-- delivery fee, tip and several payments. Orders stored before, and version 1 orders, have none
-- of them: 0, false, and no payments (their payment_method paid their total).
ALTER TABLE orders
    ADD COLUMN schema_version smallint NOT NULL DEFAULT 1,
    ADD COLUMN discount numeric(12,2) NOT NULL DEFAULT 0 CHECK (discount >= 0),
    ADD COLUMN service_charge numeric(12,2) NOT NULL DEFAULT 0 CHECK (service_charge >= 0),
    ADD COLUMN service_charge_is_revenue boolean NOT NULL DEFAULT false,
    ADD COLUMN delivery_fee numeric(12,2) NOT NULL DEFAULT 0 CHECK (delivery_fee >= 0),
    ADD COLUMN tip numeric(12,2) NOT NULL DEFAULT 0 CHECK (tip >= 0),
    -- [{"method": "pix", "amount": "100.00"}, ...], amounts as exact decimal strings
    ADD COLUMN payments jsonb CHECK (payments IS NULL OR jsonb_typeof(payments) = 'array');

ALTER TABLE order_items ADD COLUMN discount numeric(12,2) NOT NULL DEFAULT 0 CHECK (discount >= 0);
