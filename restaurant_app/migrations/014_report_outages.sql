-- A failed run says whether an outage failed it (PostgreSQL, its replica or the Spark Connect
-- server unreachable, a timeout, a job that died): such failures never make a later run skip
-- orders; only failures of the job on the orders themselves count (spark_reports/ledger.py).
-- retried_skips: the run recomputed the windows of report_skipped_windows as well.
ALTER TABLE report_runs
    ADD COLUMN outage boolean NOT NULL DEFAULT false,
    ADD COLUMN retried_skips boolean NOT NULL DEFAULT false;
