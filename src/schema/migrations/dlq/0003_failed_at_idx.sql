-- Browsing every queue newest first (the dashboard's dead-letter page, `txoutbox dlq list`) and
-- retention across queues: without it both sort or scan the whole DLQ.
CREATE INDEX {{dlq_time_idx}} ON {{dlq}} (failed_at, id);
