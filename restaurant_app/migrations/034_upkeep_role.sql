-- Migration 024's upkeep functions run as a role of their own, restaurant_upkeep, rather than as
-- whichever role migrated (the superuser, with make run and compose): a SECURITY DEFINER function
-- runs with its owner's rights, so an argument check that let something through would have had
-- the superuser's. restaurant_upkeep cannot log in and nobody is given its rights but the role
-- that migrates (so that later migrations may still change the orders' tables): it owns orders and
-- order_items and their partitions (PostgreSQL lets only a partitioned table's owner create,
-- attach or detach its partitions), may create tables in public (the day partitions), and may
-- read and delete the rows the retentions remove (restaurant_app/privileges.sql); nothing else.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restaurant_upkeep') THEN
        CREATE ROLE restaurant_upkeep NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
            NOREPLICATION NOBYPASSRLS;
    END IF;
    -- A migrating role that is not a superuser must be able to act as the new owner of the tables.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT restaurant_upkeep TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO restaurant_upkeep;

DO $$
DECLARE
    partitioned regclass;
BEGIN
    FOR partitioned IN
        SELECT c.oid::regclass FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
        WHERE i.inhparent IN ('public.orders'::regclass, 'public.order_items'::regclass)
        UNION ALL SELECT 'public.orders'::regclass UNION ALL SELECT 'public.order_items'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO restaurant_upkeep', partitioned);
    END LOOP;
END
$$;

ALTER FUNCTION upkeep_default_days() OWNER TO restaurant_upkeep;
ALTER FUNCTION upkeep_add_day(date) OWNER TO restaurant_upkeep;
ALTER FUNCTION upkeep_drop_day(date) OWNER TO restaurant_upkeep;
ALTER FUNCTION upkeep_delete_old(text, timestamptz, integer) OWNER TO restaurant_upkeep;
