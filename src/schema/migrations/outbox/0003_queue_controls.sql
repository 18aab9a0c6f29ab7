-- One row per paused queue: while it exists no subscriber claims that queue's rows (the claim
-- statement checks it, so the pause holds in every process at once). pause() inserts, resume()
-- deletes. Publishing never reads it.
CREATE TABLE {{paused}} (
  queue text PRIMARY KEY,
  paused_at timestamptz NOT NULL DEFAULT now(),
  -- Why, for the next operator: shown by `txoutbox status` and the dashboard.
  reason text
);
-- Outcomes per queue per minute, summed over every process: each process adds what its
-- subscriptions did every few seconds (one upsert), and drops minutes older than an hour. What
-- `txoutbox status` and the dashboard show as throughput; never read on the delivery path.
CREATE TABLE {{stats}} (
  queue text NOT NULL,
  minute timestamptz NOT NULL,
  handled bigint NOT NULL DEFAULT 0,
  retried bigint NOT NULL DEFAULT 0,
  dead_lettered bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, minute)
);
