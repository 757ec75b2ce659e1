-- Whether a report window had closed (its end plus the grace period had passed) when the run
-- that computed it started: a final window holds every order that arrived on time.
ALTER TABLE report_sales ADD COLUMN final boolean NOT NULL DEFAULT false;
UPDATE report_sales SET final = computed_at >= period_end;
