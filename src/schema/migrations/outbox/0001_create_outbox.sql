-- The outbox table: the queue. See architecture/schema.md for what each column and index is for.
-- Placeholders ({{...}}) are validated, quoted identifiers substituted by render-migration.ts.
CREATE TABLE {{outbox}} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue text NOT NULL,
  payload bytea NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Load-bearing default: a row is claimable once next_attempt_at <= now().
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  attempts_count integer NOT NULL DEFAULT 0,
  deliveries_count integer NOT NULL DEFAULT 0,
  acquired_token uuid,
  acquired_at timestamptz,
  timer_id text,
  -- A half-set lease (token without time or the reverse) would make a row unclaimable forever.
  CONSTRAINT {{lease_ck}} CHECK ((acquired_token IS NULL) = (acquired_at IS NULL))
);

-- Claim branch 1: ready rows in FIFO order per queue.
CREATE INDEX {{ready_idx}} ON {{outbox}} (queue, next_attempt_at, id) WHERE acquired_token IS NULL;

-- Claim branch 2: leased rows, to reclaim those whose lease expired (no reaper process needed).
CREATE INDEX {{lease_idx}} ON {{outbox}} (queue, acquired_at) WHERE acquired_token IS NOT NULL;

-- At most one live row per (queue, timer_id): the ON CONFLICT arbiter of timer publishes.
CREATE UNIQUE INDEX {{timer_uq}} ON {{outbox}} (queue, timer_id) WHERE timer_id IS NOT NULL;
