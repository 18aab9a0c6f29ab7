import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { runsDecodedQueries, tagsBeforeFailure } from '../../src/util/decoded-query.js';
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
    const pool = poolOf(pg);
    // Both connections opened first: a failed statement's connection is discarded, and a connect
    // under a loaded CI may take longer than the 200 ms this runner allows its checkout.
    const warm = await Promise.all([pool.connect(), pool.connect()]);
    for (const client of warm) client.release();
    const runner = new StatementRunner(pool, false, 200);
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

describe('StatementRunner.pipelineOn: statements sent before the decoded one, in one round trip', () => {
  const TABLE = 'pipeline_rows';
  const DELETE = statement('pipeline_delete', `DELETE FROM ${TABLE} WHERE id = ANY($1::bigint[])`);
  const BEGIN = statement('pipeline_begin', 'BEGIN');
  const COMMIT = statement('pipeline_commit', 'COMMIT');
  const SETTINGS = statement('pipeline_settings', `SELECT set_config('enable_seqscan', 'off', true)`);
  const CLAIM = statement('pipeline_claim', `SELECT id::text FROM ${TABLE} ORDER BY ${TABLE}.id LIMIT $1 FOR UPDATE SKIP LOCKED`);
  const step = (of: { name: string; text: string }, values?: string[]) => ({ name: of.name, text: of.text, values });

  async function withRows(n: number): Promise<StatementRunner> {
    await db.pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await db.pool.query(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY)`);
    await db.pool.query(`INSERT INTO ${TABLE} SELECT generate_series(1, $1::int)`, [n]);
    return new StatementRunner(poolOf(pg), true, 5_000);
  }

  const count = async () => Number((await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${TABLE}`)).rows[0]?.n);
  const lockable = async () =>
    (await db.pool.query<{ id: string }>(`SELECT id::text FROM ${TABLE} ORDER BY id FOR UPDATE SKIP LOCKED`)).rows.map(
      (row) => row.id,
    );

  test("a batch's DELETE, COMMIT, the next BEGIN and settings, and the next claim: every tag in order, the claim's rows only, its locks held in the new transaction", async () => {
    const runner = await withRows(6);
    const client = await runner.checkout();
    try {
      await client.query('BEGIN');
      let held = (await runner.decodedOn(client, CLAIM, [2], (fields) => fields[0])) as string[];
      for (let round = 0; round < 2; round += 1) {
        const answer = await runner.pipelineOn(
          client,
          [step(DELETE, [`{${held.join(',')}}`]), step(COMMIT), step(BEGIN), step(SETTINGS)],
          CLAIM,
          [2],
          (fields) => fields[0],
        );
        assert.ok(answer !== undefined);
        assert.deepEqual(answer.tags, ['DELETE 2', 'COMMIT', 'BEGIN', 'SELECT 1', 'SELECT 2']);
        held = answer.rows as string[];
        assert.deepEqual(held, round === 0 ? ['3', '4'] : ['5', '6'], "the claim's rows, not the settings' row");
        assert.equal(await count(), 4 - 2 * round, 'the DELETE committed');
        assert.deepEqual(await lockable(), round === 0 ? ['5', '6'] : [], 'the claimed rows stay locked after the message');
        const { rows } = await db.pool.query<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [
          (client as unknown as { processID: number }).processID,
        ]);
        assert.equal(rows[0]?.state, 'idle in transaction', 'in the transaction the pipelined BEGIN opened');
      }
      const { rows: prepared } = await client.query<{ name: string }>(
        `SELECT name FROM pg_prepared_statements WHERE name LIKE 'txoutbox_pipeline_%' ORDER BY name`,
      );
      assert.deepEqual(
        prepared.map((row) => row.name.replace(/_[0-9a-f]+$/, '')),
        [
          'txoutbox_pipeline_begin',
          'txoutbox_pipeline_claim',
          'txoutbox_pipeline_commit',
          'txoutbox_pipeline_delete',
          'txoutbox_pipeline_settings',
        ],
        'each named statement parsed once on the connection (a second Parse of a name would have failed)',
      );
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  test('one name as a prelude and as the statement on one connection, either first: parsed once (a row-lock COMMIT is both)', async () => {
    const runner = await withRows(8);
    const client = await runner.checkout();
    try {
      await client.query('BEGIN');
      // COMMIT first a prelude, then the decoded statement (its rows: none) …
      const chained = await runner.pipelineOn(
        client,
        [step(DELETE, ['{1}']), step(COMMIT), step(BEGIN)],
        CLAIM,
        [1],
        (f) => f[0],
      );
      assert.deepEqual(chained?.tags, ['DELETE 1', 'COMMIT', 'BEGIN', 'SELECT 1']);
      const last = await runner.pipelineOn(client, [step(DELETE, ['{2}'])], COMMIT, [], (f) => f);
      assert.deepEqual(last?.tags, ['DELETE 1', 'COMMIT'], 'the COMMIT parsed as a prelude runs as the statement');
      assert.equal(await count(), 6);
      // … and the other way round: the claim, parsed as the statement above, as a prelude now.
      await client.query('BEGIN');
      const reversed = await runner.pipelineOn(client, [step(CLAIM, ['1'])], COMMIT, [], (f) => f);
      assert.deepEqual(reversed?.tags, ['SELECT 1', 'COMMIT']);
    } finally {
      client.release();
    }
  });

  test('a failing prelude: nothing after it runs, the error (its code kept) says what completed, and the connection goes on with its preludes unnamed', async () => {
    const runner = await withRows(4);
    const client = await runner.checkout();
    const names = async () =>
      (await client.query<{ name: string }>(`SELECT name FROM pg_prepared_statements ORDER BY name`)).rows.map((row) => row.name);
    try {
      const failing = statement('pipeline_fail', 'SELECT (1 / 0)::text');
      await client.query('BEGIN');
      await assert.rejects(
        runner.pipelineOn(client, [step(DELETE, ['{1}']), step(failing), step(COMMIT), step(BEGIN)], CLAIM, [1], (f) => f[0]),
        (error: unknown) => {
          assert.equal((error as { code?: string }).code, '22012', "node-postgres' own error, its SQLSTATE kept");
          assert.match(String(error), /division by zero/);
          assert.deepEqual(tagsBeforeFailure(error), ['DELETE 1'], 'what completed before the failure');
          return true;
        },
      );
      await client.query('ROLLBACK');
      assert.equal(await count(), 4, 'the DELETE before the failure rolled back: the COMMIT after it never ran');
      const before = await names();
      // A name this connection never parsed goes unnamed now: no Parse of a name is repeated.
      const fresh = statement('pipeline_after_failure', `SELECT set_config('enable_seqscan', 'off', true)`);
      await client.query('BEGIN');
      const answer = await runner.pipelineOn(
        client,
        [step(DELETE, ['{1}']), step(fresh), step(COMMIT), step(BEGIN)],
        CLAIM,
        [1],
        (f) => f[0],
      );
      assert.deepEqual(answer?.rows, ['2']);
      assert.deepEqual(answer?.tags, ['DELETE 1', 'SELECT 1', 'COMMIT', 'BEGIN', 'SELECT 1']);
      assert.equal(await count(), 3);
      await client.query('ROLLBACK');
      assert.deepEqual(await names(), before, 'the preludes went unnamed');
    } finally {
      client.release();
    }
  });

  test('a statement without a name or values after preludes (an unprepared COMMIT) still takes the extended protocol: the preludes run', async () => {
    await withRows(3);
    const unprepared = new StatementRunner(poolOf(pg), false, 5_000);
    const client = await unprepared.checkout();
    try {
      await client.query('BEGIN');
      const answer = await unprepared.pipelineOn(client, [step(DELETE, ['{1,2}'])], COMMIT, [], (f) => f);
      assert.deepEqual(answer?.tags, ['DELETE 2', 'COMMIT']);
      assert.equal(await count(), 1, 'the DELETE ran and committed');
    } finally {
      client.release();
    }
  });

  test('unprepared: every statement unnamed; on another node-postgres copy: undefined, nothing sent', async () => {
    await withRows(3);
    const unprepared = new StatementRunner(poolOf(pg), false, 5_000);
    const client = await unprepared.checkout();
    try {
      // Behind PgBouncer in transaction mode (< 1.21) no name may be left on a server connection.
      for (let round = 0; round < 2; round += 1) {
        const answer = await unprepared.pipelineOn(client, [step(BEGIN), step(SETTINGS)], CLAIM, [1], (f) => f[0]);
        assert.deepEqual(answer?.rows, ['1']);
        assert.deepEqual(answer?.tags, ['BEGIN', 'SELECT 1', 'SELECT 1']);
        await client.query('ROLLBACK');
      }
      const names = await client.query(`SELECT name FROM pg_prepared_statements`);
      assert.deepEqual(names.rows, [], 'nothing prepared');
    } finally {
      client.release();
    }
    const runner = new StatementRunner(poolOf(other), true, 5_000);
    const otherClient = await runner.checkout();
    try {
      assert.equal(runner.pipelines(otherClient), false);
      assert.equal(await runner.pipelineOn(otherClient, [step(BEGIN)], CLAIM, [1], (f) => f), undefined);
      const { rows } = await otherClient.query<{ status: string }>(`SELECT 'idle' AS status`);
      assert.deepEqual(rows, [{ status: 'idle' }], 'no BEGIN was sent');
    } finally {
      otherClient.release();
    }
  });
});
