-- Per-key ordering (publish option orderingKey): within a queue, a keyed row is claimable only
-- while no older row of its key is left (leased, scheduled for a retry or delayed). Rows are
-- deleted when they end, so the oldest row of a key is the one that may run. NULL: no key, no
-- constraint. Nullable without a default: adding it rewrites nothing.
ALTER TABLE {{outbox}} ADD COLUMN ordering_key text;
-- The claim's "an older row of this key?" probe, one index lookup per keyed candidate. Partial:
-- unkeyed rows never enter it, so queues without keys pay nothing on insert or claim.
CREATE INDEX {{key_idx}} ON {{outbox}} (queue, ordering_key, id) WHERE ordering_key IS NOT NULL;
