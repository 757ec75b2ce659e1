-- Orders lose their row-by-row foreign key to order_keys, as their lines did in migration 027, and
-- order_keys loses the unique (order_id, created_at) index that only that key needed. PostgreSQL
-- checked the key with one lookup in order_keys for every order, and kept a second index on every
-- key. A statement trigger checks the same for all the rows an INSERT adds, in one query: an order
-- whose key is not in order_keys is refused (foreign_key_violation) for any writer, as before.
-- The save path inserts an order only when its key was new, in the statement that inserts the
-- key (restaurant_app/order_sink.py), and order_id stays unique across the day partitions through
-- order_keys' primary key.
--
-- Deleting an order's key still deletes the order (as ON DELETE CASCADE did), by a trigger on each
-- deleted key that reads the order by its primary key, in its day's partition only, as migration
-- 027's trigger does its lines; it costs nothing when orders are stored. The foreign key also
-- refused any change of a stored order's key (restaurant_ingest may UPDATE order_keys' order_id,
-- only to lock a key: privileges.sql); a trigger refuses it now. The functions name their tables
-- with their schema: a table of the same name in another schema on a session's search_path
-- (a temporary one) is never read or changed in their place.
ALTER TABLE orders DROP CONSTRAINT orders_order_keys_fkey;
ALTER TABLE order_keys DROP CONSTRAINT order_keys_order_id_created_at_key;

CREATE FUNCTION refuse_orders_without_their_key() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    SELECT n.order_id, n.created_at INTO orphan FROM inserted_orders n
    WHERE NOT EXISTS (SELECT FROM public.order_keys k WHERE k.order_id = n.order_id AND k.created_at = n.created_at)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'order % at % has no key in order_keys', orphan.order_id, orphan.created_at
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_have_their_key AFTER INSERT ON orders REFERENCING NEW TABLE AS inserted_orders
FOR EACH STATEMENT EXECUTE FUNCTION refuse_orders_without_their_key();

CREATE FUNCTION delete_order_of_deleted_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.orders WHERE order_id = OLD.order_id AND created_at = OLD.created_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_keys_delete_order AFTER DELETE ON order_keys
FOR EACH ROW EXECUTE FUNCTION delete_order_of_deleted_key();

CREATE FUNCTION refuse_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.order_id, NEW.created_at) IS DISTINCT FROM (OLD.order_id, OLD.created_at) THEN
        RAISE EXCEPTION 'the key of order % is not changed', OLD.order_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER order_keys_unchanged BEFORE UPDATE ON order_keys
FOR EACH ROW EXECUTE FUNCTION refuse_key_change();
