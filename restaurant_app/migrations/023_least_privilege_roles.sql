-- Least privilege: a role for each kind of work, none of them able to change the schema
-- (what each may do: restaurant_app/privileges.sql).
-- restaurant_ingest stores orders and rejections; restaurant_reports reads the orders and
-- writes the reports; restaurant_web only reads. They are created without LOGIN: `make run`
-- (infra) gives each a password of its own and LOGIN; elsewhere an administrator does
-- (`ALTER ROLE restaurant_web LOGIN PASSWORD '...'`). The migrations and the admin command
-- keep running as the owner of the tables. Roles belong to the whole server, so a second
-- database on it finds them made already.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['restaurant_ingest', 'restaurant_reports', 'restaurant_web'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                           role_name);
        END IF;
    END LOOP;
END
$$;

-- Nobody but the owner creates anything in the schema (PostgreSQL 15 and later already say so).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- What each role may do is restaurant_app/privileges.sql, granted after every migration.
