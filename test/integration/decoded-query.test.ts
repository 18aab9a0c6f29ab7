import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { runsDecodedQueries } from '../../src/util/decoded-query.js';
import { plannedOnce, statement } from '../../src/util/statement.js';
import { StatementRunner } from '../../src/util/statement-runner.js';
import { useTestDatabase } from '../support/database.js';
import { otherNodePostgres } from '../support/other-node-postgres.js';

const db = useTestDatabase(import.meta.url);

/** Three rows: texts as the server prints them, NULLs as null, the select-list order kept. */
const ROWS = statement(
  'decoded_rows',
  `SELECT n::text AS n, CASE WHEN n = 2 THEN NULL ELSE 'v' || n END AS v, $1::text AS p
   FROM generate_series(1, 3) AS n ORDER BY n`,
);
const EXPECTED = [
  ['1', 'v1', 'x'],
  ['2', null, 'x'],
  ['3', 'v3', 'x'],
];

function poolOf(copy: typeof pg): pg.Pool {
  const pool = new copy.Pool({ connectionString: db.url, max: 2 });
  db.onCleanup(() => pool.end());
  return pool;
}

const other = otherNodePostgres();

describe('StatementRunner.decoded (DecodedQuery)', () => {
  test('the other copy is another node-postgres: its clients do not run DecodedQuery', async () => {
    assert.notEqual(other.Client, pg.Client);
    const ours = await poolOf(pg).connect();
    const theirs = await poolOf(other).connect();
    try {
      assert.equal(runsDecodedQueries(ours), true);
      assert.equal(runsDecodedQueries(theirs), false);
    } finally {
      ours.release();
      theirs.release();
    }
  });

  for (const [label, copy] of [
    ['this package’s node-postgres', pg],
    ['another node-postgres copy (fallback)', other],
  ] as const) {
    for (const prepared of [true, false]) {
      test(`${label}, ${prepared ? 'prepared' : 'unnamed'}: every row through the decoder, in order, NULL as null`, async () => {
        const runner = new StatementRunner(poolOf(copy), prepared, 5_000);
        for (let round = 0; round < 2; round += 1) {
          const seen: (readonly (string | null)[])[] = [];
          const rows = await runner.decoded(ROWS, ['x'], (fields) => {
            seen.push([...fields]);
            return { n: Number(fields[0]), v: fields[1] };
          });
          assert.deepEqual(seen, EXPECTED);
          assert.deepEqual(rows, [
            { n: 1, v: 'v1' },
            { n: 2, v: null },
            { n: 3, v: 'v3' },
          ]);
        }
      });
    }

    test(`${label}: a decoder that throws fails the statement, and the connection stays in step`, async () => {
      const runner = new StatementRunner(poolOf(copy), true, 5_000);
      const client = await runner.checkout();
      try {
        await assert.rejects(
          runner.decodedOn(client, ROWS, ['x'], (fields) => {
            if (fields[0] === '2') throw new Error('bad row');
            return fields[0];
          }),
          /bad row/,
        );
        // The server's answer was read to its end: the next statement on this client gets its own.
        assert.deepEqual(await runner.decodedOn(client, ROWS, ['y'], (fields) => fields[2]), ['y', 'y', 'y']);
      } finally {
        client.release();
      }
    });
  }

  describe('a plannedOnce statement (the generic-plan settings sent first, in the same round trip)', () => {
    /** What the session says while the statement runs, on this package's node-postgres. */
    const SETTINGS_NOW = plannedOnce(
      statement(
        'decoded_settings',
        `SELECT current_setting('plan_cache_mode') AS mode, current_setting('enable_seqscan') AS seq, $1::text AS p
         FROM generate_series(1, 2)`,
      ),
    );
    const sessionSettings = async (client: pg.PoolClient) =>
      (
        await client.query<{ mode: string; seq: string }>(
          `SELECT current_setting('plan_cache_mode') AS mode, current_setting('enable_seqscan') AS seq`,
        )
      ).rows[0];

    test('runs under the settings, returns its own rows only, and the settings end with it', async () => {
      const runner = new StatementRunner(poolOf(pg), true, 5_000);
      const client = await runner.checkout();
      try {
        await client.query('SET plan_cache_mode = force_custom_plan');
        for (let round = 0; round < 3; round += 1) {
          const rows = await runner.decodedOn(client, SETTINGS_NOW, ['x'], (fields) => [...fields]);
          assert.deepEqual(rows, [
            ['force_generic_plan', 'off', 'x'],
            ['force_generic_plan', 'off', 'x'],
          ]);
          assert.deepEqual(await sessionSettings(client), { mode: 'force_custom_plan', seq: 'on' }, 'the session as it was');
        }
        const { rows: prepared } = await client.query<{ generic: string; custom: string }>(
          'SELECT generic_plans::text AS generic, custom_plans::text AS custom FROM pg_prepared_statements WHERE name = $1',
          [SETTINGS_NOW.name],
        );
        assert.deepEqual(prepared, [{ generic: '3', custom: '0' }], 'one generic plan, reused');
      } finally {
        client.release();
      }
    });

    test('a failing statement after the prelude rejects, and the connection stays in step', async () => {
      const runner = new StatementRunner(poolOf(pg), true, 5_000);
      const client = await runner.checkout();
      try {
        const failing = plannedOnce(statement('decoded_settings_fail', 'SELECT (1 / ($1::int - 1))::text'));
        await assert.rejects(
          runner.decodedOn(client, failing, [1], (fields) => fields[0]),
          /division by zero/,
        );
        assert.deepEqual(await runner.decodedOn(client, failing, [2], (fields) => fields[0]), ['1']);
        assert.equal((await sessionSettings(client))?.seq, 'on');
      } finally {
        client.release();
      }
    });

    test('unprepared, or on another node-postgres copy: no prelude, the session’s own settings', async () => {
      for (const [copy, prepared] of [
        [pg, false],
        [other, true],
      ] as const) {
        const runner = new StatementRunner(poolOf(copy), prepared, 5_000);
        const rows = await runner.decoded(SETTINGS_NOW, ['x'], (fields) => fields[1]);
        assert.deepEqual(rows, ['on', 'on']);
      }
    });
  });

  test('a server error rejects, and an answer slower than queryTimeoutMs + 1 s fails by query_timeout', async () => {
    const runner = new StatementRunner(poolOf(pg), false, 200);
    await assert.rejects(
      runner.decoded(statement('decoded_fail', 'SELECT 1 / 0'), [], (fields) => fields),
      /division by zero/,
    );
    await assert.rejects(
      runner.decoded(statement('decoded_slow', 'SELECT pg_sleep(3)::text'), [], (fields) => fields),
      /timeout/i,
    );
  });
});
