-- The day partitions' upkeep and the retentions, as functions the worker's role may call
-- (restaurant_ingest; EXECUTE in restaurant_app/privileges.sql) without owning the tables:
-- creating and dropping a partition needs the owner, so the worker held the owner's login.
-- Each runs as its owner (the role that migrates, SECURITY DEFINER) with a fixed search_path
-- (pg_temp last, and nobody else may create in public: migration 023), checks its arguments and
-- does only its one job: create a day's partitions, moving its rows out of the default ones;
-- drop a day's partitions at least two days old; delete one bounded batch of one kind of old
-- rows. restaurant_app/partitions.py and restaurant_app/retention.py call them.

-- The UTC days that have rows in orders' default partition (no day partition of their own yet).
CREATE FUNCTION upkeep_default_days() RETURNS SETOF date
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM public.orders_default
$$;

-- Create the partitions of orders and order_items for the UTC day ``day`` that are missing,
-- moving that day's rows out of the default partitions into them; return the orders moved.
-- Takes the tables' SHARE ROW EXCLUSIVE lock until the caller's transaction ends.
CREATE FUNCTION upkeep_add_day(day date) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    day_start timestamptz;
    day_end timestamptz;
    tables text[] := ARRAY['orders', 'order_items'];
    columns text[] := ARRAY['created_at', 'order_created_at'];
    insertable text;
    moved bigint := 0;
BEGIN
    IF day IS NULL THEN
        RAISE EXCEPTION 'upkeep_add_day: a day is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    day_start := day::timestamp AT TIME ZONE 'UTC';
    day_end := (day + 1)::timestamp AT TIME ZONE 'UTC';
    LOCK TABLE public.orders, public.order_items IN SHARE ROW EXCLUSIVE MODE;
    FOR i IN 1..2 LOOP
        EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS %I (LIKE public.%I) ON COMMIT DROP',
                       'moving_' || tables[i], tables[i]);
        EXECUTE format('WITH moved AS (DELETE FROM public.%I WHERE %I >= $1 AND %I < $2 RETURNING *)'
                       ' INSERT INTO pg_temp.%I SELECT * FROM moved',
                       tables[i] || '_default', columns[i], columns[i], 'moving_' || tables[i])
            USING day_start, day_end;
        IF i = 1 THEN
            GET DIAGNOSTICS moved = ROW_COUNT;
        END IF;
    END LOOP;
    FOR i IN 1..2 LOOP
        IF to_regclass(format('public.%I', tables[i] || '_p' || to_char(day, 'YYYYMMDD'))) IS NULL THEN
            EXECUTE format('CREATE TABLE public.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)',
                           tables[i] || '_p' || to_char(day, 'YYYYMMDD'), tables[i], day_start, day_end);
        END IF;
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO insertable
        FROM pg_attribute
        WHERE attrelid = format('public.%I', tables[i])::regclass AND attnum > 0 AND NOT attisdropped
          AND attgenerated = '';
        EXECUTE format('WITH moved AS (DELETE FROM pg_temp.%I RETURNING *) INSERT INTO public.%I (%s)'
                       ' SELECT %s FROM moved', 'moving_' || tables[i], tables[i], insertable, insertable);
    END LOOP;
    RETURN moved;
END
$$;

-- Detach and drop the partitions of orders and order_items for the UTC day ``day``; refused for
-- yesterday, today and later, which the upkeep always keeps. Return whether there were any.
CREATE FUNCTION upkeep_drop_day(day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    partition_name text;
    found_any boolean := false;
BEGIN
    IF day IS NULL OR day > (now() AT TIME ZONE 'UTC')::date - 2 THEN
        RAISE EXCEPTION 'upkeep_drop_day: % is not a day at least two days old', day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH partition_name IN ARRAY ARRAY['orders', 'order_items'] LOOP
        IF to_regclass(format('public.%I', partition_name || '_p' || to_char(day, 'YYYYMMDD'))) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE public.%I DETACH PARTITION public.%I', partition_name,
                           partition_name || '_p' || to_char(day, 'YYYYMMDD'));
            EXECUTE format('DROP TABLE public.%I', partition_name || '_p' || to_char(day, 'YYYYMMDD'));
            found_any := true;
        END IF;
    END LOOP;
    RETURN found_any;
END
$$;

-- Delete at most ``batch_rows`` rows of one ``kind`` older than ``cutoff`` (at least a day ago);
-- return how many. The kinds are restaurant_app/retention.py's.
CREATE FUNCTION upkeep_delete_old(kind text, cutoff timestamptz, batch_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    granularity text := split_part(kind, ' ', 1);
    target text := substr(kind, length(split_part(kind, ' ', 1)) + 2);
    deleted bigint;
BEGIN
    IF cutoff IS NULL OR cutoff > now() - interval '23 hours' THEN
        RAISE EXCEPTION 'upkeep_delete_old: the cutoff % is not at least a day ago', cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_rows IS NULL OR batch_rows NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'upkeep_delete_old: a batch is 1 to 100000 rows, not %', batch_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'order keys' THEN
        DELETE FROM public.order_keys WHERE order_id IN (
            SELECT order_id FROM public.order_keys WHERE created_at < cutoff LIMIT batch_rows);
    ELSIF kind = 'order events' THEN
        DELETE FROM public.order_events WHERE event_id IN (
            SELECT event_id FROM public.order_events WHERE order_created_at < cutoff LIMIT batch_rows);
    ELSIF kind = 'daily customers' THEN
        DELETE FROM public.report_customers WHERE ctid IN (
            SELECT ctid FROM public.report_customers
            WHERE report_customers.granularity = 'day' AND period_start < cutoff LIMIT batch_rows);
    ELSIF kind = 'weekly and monthly customers' THEN
        -- A week's or month's customers are kept while its orders may still come (their count stays).
        DELETE FROM public.report_customers WHERE ctid IN (
            SELECT ctid FROM public.report_customers
            WHERE report_customers.granularity IN ('week', 'month')
              AND period_start < cutoff - interval '31 days' LIMIT batch_rows);
    ELSIF kind = 'rejected messages' THEN
        DELETE FROM public.rejected_orders WHERE id IN (
            SELECT id FROM public.rejected_orders
            WHERE rejected_at < cutoff AND dead_lettered_at IS NOT NULL LIMIT batch_rows);
    ELSIF kind = 'report runs' THEN
        DELETE FROM public.report_runs WHERE run_id IN (
            SELECT run_id FROM public.report_runs
            WHERE finished_at < cutoff AND status <> 'running'
              AND run_id < (SELECT coalesce(max(run_id), 0) FROM public.report_runs WHERE status = 'succeeded')
            LIMIT batch_rows);
    ELSIF granularity IN ('minute', 'hour') AND target = 'insights' THEN
        DELETE FROM public.report_insights WHERE ctid IN (
            SELECT ctid FROM public.report_insights
            WHERE window_end - window_start <= ('1 ' || granularity)::interval AND window_start < cutoff
            LIMIT batch_rows);
    ELSIF granularity IN ('minute', 'hour') AND target IN ('report_sales', 'report_dishes', 'report_customers') THEN
        EXECUTE format('DELETE FROM public.%1$I WHERE ctid IN (SELECT ctid FROM public.%1$I'
                       ' WHERE granularity = $1 AND period_start < $2 LIMIT $3)', target)
            USING granularity, cutoff, batch_rows;
    ELSE
        RAISE EXCEPTION 'upkeep_delete_old: no such kind of rows: %', kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

REVOKE ALL ON FUNCTION upkeep_default_days(), upkeep_add_day(date), upkeep_drop_day(date),
    upkeep_delete_old(text, timestamptz, integer) FROM PUBLIC;
