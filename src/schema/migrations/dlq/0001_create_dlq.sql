-- The dead-letter table: rows that ended without success, with the reason. See architecture/schema.md.
CREATE TABLE {{dlq}} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  original_id bigint NOT NULL,
  queue text NOT NULL,
  payload bytea NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL,
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  attempts_count integer NOT NULL,
  deliveries_count integer NOT NULL,
  timer_id text,
  failure_reason text NOT NULL,
  last_exception text,
  failed_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT {{dlq_reason_ck}} CHECK (failure_reason IN ('max_deliveries', 'retry_terminal', 'rejected'))
);

-- Browsing and retention by queue and age.
CREATE INDEX {{dlq_failed_idx}} ON {{dlq}} (queue, failed_at);
