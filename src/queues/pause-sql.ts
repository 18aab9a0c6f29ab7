import type pg from 'pg';

import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

export interface PauseSql {
  /**
   * $1 queue, $2 reason, $3 channel, $4 the paused signal (channel-signal.ts). Inserts the pause, or
   * finds the one already there (kept as it is: its time and reason say when the incident began);
   * `changed` tells the two apart. Either way it notifies the signal, so every process's
   * subscribers give back the queue's buffered rows (sent when this autocommit statement commits).
   */
  readonly pause: Statement;
  /**
   * $1 queue, $2 channel. Deletes the pause and, in the same statement, notifies the queue, so
   * every process's subscribers claim again at once rather than at their next poll (the
   * notification is sent when this autocommit statement commits).
   */
  readonly resume: Statement;
}

/**
 * $1 queues (text[]): those of them paused now. Run on the LISTEN connection after each LISTEN
 * (consumer-signals.ts), unprepared: a pause signal sent while it was down reached nobody. The table is
 * named as the pool's statements name it, so an unqualified one resolves through the LISTEN
 * connection's search_path (architecture/operations.md).
 */
function pausedAmongText(names: SchemaNames): string {
  return `SELECT queue FROM ${names.paused.sql} WHERE queue = ANY($1::text[])`;
}

/** Those of `queues` paused now, read on `client` (the LISTEN connection, under its lock_timeout: subscriber/listener.ts). */
export async function readPausedAmong(client: pg.ClientBase, names: SchemaNames, queues: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ queue: string }>(pausedAmongText(names), [queues]);
  return rows.map((row) => row.queue);
}

export function buildPauseSql(names: SchemaNames): PauseSql {
  const paused = names.paused.sql;
  return {
    pause: statement(
      'pause',
      `WITH inserted AS (
  INSERT INTO ${paused} (queue, reason) VALUES ($1::text, $2::text) ON CONFLICT (queue) DO NOTHING
  RETURNING paused_at, reason
)
SELECT true AS changed, paused_at, reason, pg_notify($3::text, $4::text) IS NOT NULL AS notified FROM inserted
UNION ALL
SELECT false, paused_at, reason, pg_notify($3::text, $4::text) IS NOT NULL FROM ${paused}
WHERE queue = $1::text AND NOT EXISTS (SELECT 1 FROM inserted)`,
    ),
    resume: statement(
      'resume',
      `WITH deleted AS (DELETE FROM ${paused} WHERE queue = $1::text RETURNING queue)
SELECT count(*) > 0 AS changed, bool_or(pg_notify($2::text, queue) IS NOT NULL) AS notified FROM deleted`,
    ),
  };
}
