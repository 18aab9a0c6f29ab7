-- Browsing every queue newest first (the dashboard's dead-letter page, `txoutbox dlq list`) and
-- retention across queues: without it both sort or scan the whole DLQ. IF NOT EXISTS: on a DLQ of
-- millions of rows, build it beforehand with CREATE INDEX CONCURRENTLY and the same name, so the
-- migration does not block dead-lettering while it builds (architecture/schema.md).
CREATE INDEX IF NOT EXISTS {{dlq_time_idx}} ON {{dlq}} (failed_at, id);
