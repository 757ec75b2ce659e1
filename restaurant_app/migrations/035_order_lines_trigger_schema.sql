-- Migration 027's trigger function names order_items with its schema, as migration 029's name
-- theirs: a table of the same name in another schema on a session's search_path (a temporary
-- one) is never changed in its place.
CREATE OR REPLACE FUNCTION delete_lines_of_deleted_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.order_items WHERE order_id = OLD.order_id AND order_created_at = OLD.created_at;
    RETURN NULL;
END
$$;
