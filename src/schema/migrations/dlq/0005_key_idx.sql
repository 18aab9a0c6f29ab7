-- A redrive's order check: a keyed dead letter goes back only when no earlier dead letter of its
-- key is left in the DLQ (architecture/ordering.md), one index probe per keyed row. Partial:
-- unkeyed dead letters never enter it. IF NOT EXISTS: on a DLQ of millions of keyed rows, build
-- it beforehand with CREATE INDEX CONCURRENTLY and the same name (architecture/schema.md).
CREATE INDEX IF NOT EXISTS {{dlq_key_idx}} ON {{dlq}} (queue, ordering_key, id) WHERE ordering_key IS NOT NULL;
