-- The last failure a handler reported for this row: its class (exception_type in metrics) and its
-- rendered text (renderError, bounded). Kept across retries, so a row ended later without a run
-- (max_deliveries) reports what really went wrong. Nullable without a default: adding it rewrites nothing.
ALTER TABLE {{outbox}} ADD COLUMN last_exception_type text;
-- See last_exception_type.
ALTER TABLE {{outbox}} ADD COLUMN last_exception text;
