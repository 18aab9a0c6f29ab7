import type pg from 'pg';

/**
 * Writes one dead letter straight into `dlqTable`, as a row written outside the API would be
 * (headers of any JSON shape, a payload of any text): returns its id. The caller removes it.
 */
export async function plantDeadLetter(
  pool: pg.Pool,
  dlqTable: string,
  row: { readonly queue: string; readonly payload: string; readonly headers: Record<string, unknown> },
): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO ${dlqTable} (original_id, queue, payload, headers, created_at, attempts_count, deliveries_count, failure_reason)
     VALUES (1, $1, convert_to($2, 'UTF8'), $3::jsonb, now(), 1, 1, 'rejected') RETURNING id::text AS id`,
    [row.queue, row.payload, JSON.stringify(row.headers)],
  );
  return rows[0]?.id ?? '';
}

/**
 * Dead letters of queue `q` in `<table>_dlq` with the given ordering keys (null: unkeyed), in id
 * order; each body says `dead <n> <key>`. Returns their ids.
 */
export async function keyedDeadLetters(pool: pg.Pool, table: string, keys: readonly (string | null)[]): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO ${table}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, ordering_key)
     SELECT n, 'q', convert_to('dead ' || n || ' ' || coalesce(k, '-'), 'UTF8'), now(), 1, 1, 'rejected', k
     FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n RETURNING id::text`,
    [keys],
  );
  return rows.map((row) => row.id);
}
