-- A keyed row's own due time, as published (activateInMs / activateAt, or the publish's time):
-- next_attempt_at may be later, inherited from the row before it under its key, or pushed by
-- that row's retry. Cancelling a keyed timer gives the rows behind it this time back instead of
-- now(). NULL for unkeyed rows. Nullable without a default: adding it rewrites nothing.
ALTER TABLE {{outbox}} ADD COLUMN activate_at timestamptz;
