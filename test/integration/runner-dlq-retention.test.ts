/**
 * `dlqRetention` in txoutbox.yaml: `txoutbox run`'s parent process deletes the dead letters older
 * than it (and only those), counts them on /metrics, and its stop does not wait on a purge for long.
 * A real runner process against real DLQ rows whose failed_at is set in the past.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { useTestDatabase } from '../support/database.js';
import { runnerTestKit, scrape, total } from '../support/runner-process.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const { writeConfig, prepare, start, whenStarted } = runnerTestKit(db);

/** A runner config for `table` with one consumer and `dlqRetention: <retention>`. */
function retentionConfig(table: string, retention: string): string {
  const path = writeConfig(table, table, { orders: { queue: `${table}_q`, export: 'orders', processes: 1 } });
  writeFileSync(path, readFileSync(path, 'utf8').replace('gracefulTimeoutMs:', `dlqRetention: ${retention}\ngracefulTimeoutMs:`));
  return path;
}

async function seedDlq(table: string, rows: number, failedAgo: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, failed_at)
     SELECT g, 'dead', '\\x00', now(), 1, 1, 'rejected', now() - $2::interval FROM generate_series(1, $1::int) AS g`,
    [rows, failedAgo],
  );
}

async function dlqRows(table: string): Promise<{ old: number; young: number }> {
  const { rows } = await db.pool.query<{ old: string; young: string }>(
    `SELECT count(*) FILTER (WHERE failed_at < now() - interval '1 hour') AS old,
       count(*) FILTER (WHERE failed_at >= now() - interval '1 hour') AS young FROM ${table}_dlq`,
  );
  return { old: Number(rows[0]?.old), young: Number(rows[0]?.young) };
}

describe('txoutbox run with dlqRetention', () => {
  test('shortly after start, dead letters older than the retention are purged, younger ones kept; counted on /metrics and logged', async () => {
    await prepare('ret_run');
    await seedDlq('ret_run', 2_500, '2 days');
    await seedDlq('ret_run', 30, '10 minutes');
    const runner = start(retentionConfig('ret_run', '1h'));
    await whenStarted(runner, { orders: 1 });

    const line = await runner.waitForLog((l) => l.msg.startsWith('dlq retention: purged'), 'the first retention run');
    assert.equal(line.purged, 2_500);
    assert.equal(line.table, 'ret_run_dlq');
    assert.equal(line.retention, '1h');
    assert.equal(typeof line.failedBefore, 'string');
    assert.deepEqual(await dlqRows('ret_run'), { old: 0, young: 30 });
    const samples = await scrape(runner.metricsUrl());
    assert.equal(total(samples, 'txoutbox_dlq_retention_purged_total', { table: 'ret_run_dlq' }), 2_500);
    assert.equal(total(samples, 'txoutbox_dlq_retention_failures_total', { table: 'ret_run_dlq' }), 0);

    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('a stop while a purge batch is blocked does not wait for it past its bound; the batch commits whole later', async () => {
    await prepare('ret_stop');
    await seedDlq('ret_stop', 100, '3 days');
    // A SHARE lock on the DLQ holds the purge's DELETE (it needs ROW EXCLUSIVE) until released.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE ret_stop_dlq IN SHARE MODE');
      const runner = start(retentionConfig('ret_stop', '1d'));
      await whenStarted(runner, { orders: 1 });
      await waitFor(
        async () => {
          const { rows } = await db.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM%ret_stop_dlq%'`,
          );
          return rows.length > 0;
        },
        { timeoutMs: 20_000, what: 'the retention purge to wait on the lock' },
      );
      runner.child.kill('SIGTERM');
      await runner.waitForLog(
        (l) => l.msg.startsWith('dlq retention: a purge batch was still running at stop'),
        'the retention stop to give up waiting',
      );
      await runner.waitForLog((l) => l.msg === 'runner stopped', 'the runner to finish stopping');
      assert.deepEqual(await dlqRows('ret_stop'), { old: 100, young: 0 }, 'nothing deleted while blocked');
      // The blocked statement still holds a pooled connection; once the lock goes it ends, the
      // pool closes and the process exits.
      await blocker.query('ROLLBACK');
      assert.deepEqual(await runner.exited, { code: 0, signal: null });
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    // The batch the stop did not wait for ran once the lock was gone, whole.
    assert.deepEqual(await dlqRows('ret_stop'), { old: 0, young: 0 });
  });
});
