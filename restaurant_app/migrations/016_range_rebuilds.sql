-- A range rebuild (python -m spark_reports --from DAY --to DAY) recomputes the minutes, hours and
-- days of those days from the orders stored now. It is recorded with its own mode and the span it
-- rebuilt; incremental runs never start from its snapshot, since it read only that span.
ALTER TABLE report_runs DROP CONSTRAINT report_runs_mode_check;
ALTER TABLE report_runs
    ADD CONSTRAINT report_runs_mode_check CHECK (mode IN ('incremental', 'full', 'range')),
    ADD COLUMN range_start timestamptz,
    ADD COLUMN range_end timestamptz,
    ADD CONSTRAINT report_runs_range_check
        CHECK ((mode = 'range') = (range_start IS NOT NULL AND range_end IS NOT NULL));
