-- The report job picks the orders to report by commit order, not by insert time: each order
-- keeps the id of the transaction that inserted it, and each run the snapshot it read up to.
-- A run reads the orders whose transaction is visible in its own snapshot but was not in the
-- snapshot of the run it follows (see spark_reports/store.py), however late they committed.

-- Adding the column without a default and setting the default apart rewrites no rows. Orders
-- stored before this migration keep a NULL xid: no run after this one has a snapshot to start
-- from, so the first reads every order (like the first run on a new database), and later runs
-- never need those rows again.
ALTER TABLE orders ADD COLUMN xid xid8;
ALTER TABLE orders ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX orders_xid_idx ON orders (xid) WHERE xid IS NOT NULL;

-- snapshot: what the run read up to (pg_current_snapshot() when it started); since_run: the run
-- whose snapshot it read from (NULL: it read every order). watermark and orders_since are the
-- clock times of those two snapshots.
ALTER TABLE report_runs
    ADD COLUMN snapshot pg_snapshot,
    ADD COLUMN since_run bigint;

-- Minute windows whose orders are not in their reports: the runs that should have recomputed
-- them failed too often in a row and a later run skipped ahead (spark_reports/ledger.py). A run
-- that recomputes such a minute removes it from here; a full rebuild empties the table.
CREATE TABLE report_skipped_windows (
    period_start  timestamptz PRIMARY KEY,
    run_id        bigint      NOT NULL,
    skipped_at    timestamptz NOT NULL DEFAULT now()
);
