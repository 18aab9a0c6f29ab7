import type pg from 'pg';

import { waitFor } from './wait-for.js';

/**
 * An Outbox's LISTEN connection, found from another session through `pg_stat_activity`, whose
 * `query` is a backend's last statement: the listener's LISTEN while it idles. After every
 * (re)connect the listener runs its reads (paused queues, due times) on that connection and then
 * LISTENs again, so for those few milliseconds it shows the read: one look may miss it.
 */
function listenStatement(table: string): string {
  return `LISTEN "txoutbox.${table}"`;
}

/** How many backends idle after LISTENing on `table`'s channel now. */
export async function listenersOf(pool: pg.Pool, table: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = $1',
    [listenStatement(table)],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Terminates `table`'s LISTEN backend (the first, if a reconnect raced an old one) if it idles after
 * its LISTEN now, and waits (up to 5 s) for it to exit, so a count taken afterwards does not see it.
 * False when it was running a read.
 */
export async function terminateListener(pool: pg.Pool, table: string): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(pg_terminate_backend(pid, 5000))::int AS n FROM (
       SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1 ORDER BY backend_start LIMIT 1
     ) AS listener`,
    [listenStatement(table)],
  );
  return rows[0]?.n === 1;
}

/** Terminates `table`'s one LISTEN backend, looking again while it runs a read. */
export async function killListener(pool: pg.Pool, table: string): Promise<void> {
  await waitFor(() => terminateListener(pool, table), { what: `the LISTEN backend of ${table} terminated` });
}
