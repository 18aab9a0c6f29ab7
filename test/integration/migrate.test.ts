import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { InvalidIdentifierError } from '../../src/index.js';
import { quoteIdent } from '../../src/schema/identifiers.js';
import { serverUrl, useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

async function tableExists(name: string): Promise<boolean> {
  const { rows } = await db.pool.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [name]);
  return rows[0]?.exists === true;
}

async function history(): Promise<{ table_name: string; version: number; name: string }[]> {
  const { rows } = await db.pool.query<{ table_name: string; version: number; name: string }>(
    'SELECT table_name, version, name FROM public.txoutbox_migrations ORDER BY table_name, version',
  );
  return rows;
}

/** What migrate() creates for a table, by suffix: the tables and indexes, in relname order. */
const DERIVED_RELATIONS = [
  '',
  '_dlq',
  '_dlq_failed_idx',
  '_dlq_pkey',
  '_dlq_time_idx',
  '_key_idx',
  '_lease_idx',
  '_paused',
  '_paused_pkey',
  '_pkey',
  '_ready_idx',
  '_stats',
  '_stats_pkey',
  '_timer_uq',
];

describe('migrate', () => {
  test('by default the tables and their history live in schema txoutbox, and public gets nothing (issue 14)', async () => {
    const outbox = newOutbox({ pool: db.pool });
    assert.deepEqual(
      [outbox.table, outbox.dlqTable, outbox.channel],
      ['txoutbox.outbox', 'txoutbox.outbox_dlq', 'txoutbox.outbox'],
    );
    assert.equal((await outbox.migrate()).applied.length, 9);
    for (const table of [
      'txoutbox.outbox',
      'txoutbox.outbox_paused',
      'txoutbox.outbox_stats',
      'txoutbox.outbox_dlq',
      'txoutbox.txoutbox_migrations',
    ]) {
      assert.ok(await tableExists(table), table);
    }
    assert.ok(!(await tableExists('public.outbox')));
    const { rows } = await db.pool.query<{ entry: string }>(
      `SELECT table_name || '@' || version AS entry FROM txoutbox.txoutbox_migrations ORDER BY 1`,
    );
    assert.deepEqual(
      rows.map((r) => r.entry),
      [
        'txoutbox.outbox@1',
        'txoutbox.outbox@2',
        'txoutbox.outbox@3',
        'txoutbox.outbox@4',
        'txoutbox.outbox@5',
        'txoutbox.outbox_dlq@1',
        'txoutbox.outbox_dlq@2',
        'txoutbox.outbox_dlq@3',
        'txoutbox.outbox_dlq@4',
      ],
    );
    const { rows: indexes } = await db.pool.query<{ name: string }>(
      `SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'txoutbox' AND tablename = 'outbox' ORDER BY 1`,
    );
    assert.deepEqual(
      indexes.map((i) => i.name),
      ['outbox_key_idx', 'outbox_lease_idx', 'outbox_pkey', 'outbox_ready_idx', 'outbox_timer_uq'],
      'indexes live beside their table',
    );
  });

  test('creates the outbox and DLQ tables once; a second call applies nothing', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'm_basic' });
    const first = await outbox.migrate();
    assert.deepEqual(first.applied, [
      'outbox/0001_create_outbox',
      'outbox/0002_last_exception',
      'outbox/0003_queue_controls',
      'outbox/0004_ordering_key',
      'outbox/0005_activate_at',
      'dlq/0001_create_dlq',
      'dlq/0002_last_exception_type',
      'dlq/0003_failed_at_idx',
      'dlq/0004_ordering_key',
    ]);
    assert.ok(await tableExists('m_basic'));
    assert.ok(await tableExists('m_basic_dlq'));
    assert.ok(await tableExists('m_basic_paused'));
    assert.ok(await tableExists('m_basic_stats'));
    assert.deepEqual((await outbox.migrate()).applied, []);
  });

  test('two processes migrating at once end with one schema', async () => {
    // Separate pools = separate sessions, as two processes would have.
    const pools = [new pg.Pool({ connectionString: db.url, max: 1 }), new pg.Pool({ connectionString: db.url, max: 1 })];
    try {
      const outboxes = pools.map((pool) => newOutbox({ pool, table: 'm_race' }));
      const results = await Promise.all(outboxes.map((o) => o.migrate()));
      const applied = results.map((r) => r.applied.length).sort();
      assert.deepEqual(applied, [0, 9], 'one caller applied every migration, the other found nothing to do');
      const rows = (await history()).filter((r) => r.table_name.startsWith('m_race'));
      assert.deepEqual(
        rows.map((r) => `${r.table_name}@${r.version}`),
        [
          'm_race@1',
          'm_race@2',
          'm_race@3',
          'm_race@4',
          'm_race@5',
          'm_race_dlq@1',
          'm_race_dlq@2',
          'm_race_dlq@3',
          'm_race_dlq@4',
        ],
      );
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  test('services migrating different tables at once into a fresh database all succeed (issue 13, item 15)', async () => {
    // Two of the tables share the bookkeeping table of the search_path's schema, two share a new
    // schema and its bookkeeping table: both were created under a per-table lock only, and the
    // losers failed with a duplicate key in pg_type / pg_namespace.
    const tables = ['orders_outbox', 'billing_outbox', 'svc.mail_outbox', 'svc.sms_outbox'];
    const admin = new pg.Client({ connectionString: serverUrl() });
    await admin.connect();
    try {
      for (let round = 0; round < 5; round += 1) {
        const database = `${(await db.pool.query<{ d: string }>('SELECT current_database() AS d')).rows[0]?.d}_fresh_${round}`;
        await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
        const url = new URL(db.url);
        url.pathname = `/${database}`;
        // One pool per service: separate sessions, as separate processes would have.
        const pools = tables.map(() => {
          const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
          // pool.end() does not wait for the server side: DROP … FORCE may end a closing connection.
          pool.on('error', () => undefined);
          return pool;
        });
        const outboxes = pools.map((pool, i) => newOutbox({ pool, table: tables[i] }));
        try {
          const results = await Promise.allSettled(outboxes.map((outbox) => outbox.migrate()));
          const failures = results.flatMap((r) =>
            r.status === 'rejected' ? [String((r.reason as Error).cause ?? r.reason)] : [],
          );
          assert.deepEqual(failures, [], `round ${round}`);
          const recorded = await pools[0]!.query<{ n: number }>(
            `SELECT (SELECT count(DISTINCT table_name) FROM public.txoutbox_migrations)::int
                  + (SELECT count(DISTINCT table_name) FROM svc.txoutbox_migrations)::int AS n`,
          );
          assert.equal(recorded.rows[0]?.n, tables.length * 2, 'every outbox and DLQ table recorded its history');
        } finally {
          await Promise.all(outboxes.map((outbox) => outbox.stop()));
          await Promise.all(pools.map((pool) => pool.end()));
        }
        await admin.query(`DROP DATABASE ${quoteIdent(database)} WITH (FORCE)`);
      }
    } finally {
      await admin.end();
    }
  });

  test('a schema-qualified table gets its schema, and the DLQ lives beside it', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'app.orders_outbox' });
    await outbox.migrate();
    assert.equal(outbox.dlqTable, 'app.orders_outbox_dlq');
    assert.ok(await tableExists('app.orders_outbox'));
    assert.ok(await tableExists('app.orders_outbox_dlq'));
    assert.ok(await tableExists('app.txoutbox_migrations'));
    assert.equal(outbox.channel, 'txoutbox.app.orders_outbox');
  });

  test('dlqTable: false creates no DLQ table; a DLQ added later is migrated then', async () => {
    await newOutbox({ pool: db.pool, table: 'm_nodlq', dlqTable: false }).migrate();
    assert.ok(await tableExists('m_nodlq'));
    assert.ok(!(await tableExists('m_nodlq_dlq')));
    const later = await newOutbox({ pool: db.pool, table: 'm_nodlq', dlqTable: 'm_nodlq_dead' }).migrate();
    assert.deepEqual(later.applied, [
      'dlq/0001_create_dlq',
      'dlq/0002_last_exception_type',
      'dlq/0003_failed_at_idx',
      'dlq/0004_ordering_key',
    ]);
    assert.ok(await tableExists('m_nodlq_dead'));
  });

  test('the printed script builds the same schema, and migrate() then has nothing to do', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'scripted.outbox' });
    const script = outbox.migrationScript();
    assert.ok(!/\bBEGIN\b|\bCOMMIT\b/.test(script), 'the caller owns the transaction');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(script);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.deepEqual((await outbox.migrate()).applied, []);
    assert.ok(await tableExists('scripted.outbox_dlq'));
  });

  test('reserved words are quoted, not rejected', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'user' });
    await outbox.migrate();
    assert.ok(await tableExists('"user"'));
  });

  test('the default schema leaves the limit at 48 bytes: a 48-byte txoutbox.<table> migrates with its names intact', async () => {
    const table = 'k'.repeat(48);
    const outbox = newOutbox({ pool: db.pool, table: `txoutbox.${table}` });
    assert.equal(outbox.channel, `txoutbox.${table}`, 'the schema is left out of the channel');
    await outbox.migrate();
    const { rows } = await db.pool.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'txoutbox' AND c.relname LIKE $1 || '%' AND c.relkind IN ('r', 'i') ORDER BY c.relname`,
      [table],
    );
    assert.deepEqual(
      rows.map((r) => r.relname.slice(table.length)),
      DERIVED_RELATIONS,
    );
  });

  test('a table name at the documented limit migrates with every derived name intact (not truncated)', async () => {
    const table = 'l'.repeat(48); // the limit with the default DLQ (architecture/schema.md)
    await newOutbox({ pool: db.pool, table }).migrate();
    const { rows } = await db.pool.query<{ relname: string }>(
      `SELECT relname FROM pg_class WHERE relname LIKE $1 || '%' AND relkind IN ('r', 'i') ORDER BY relname`,
      [table],
    );
    assert.deepEqual(
      rows.map((r) => r.relname.slice(table.length)),
      DERIVED_RELATIONS,
    );
  });

  test("one table, two spellings: after table: 'public.<t>' migrated it, table: '<t>' finds its history and applies nothing", async () => {
    // The history is keyed by the table as configured; the unqualified spelling looked only under
    // '<t>', ran outbox/0002 again and failed (column already exists) at every start.
    const qualified = newOutbox({ pool: db.pool, table: 'public.two_spellings' });
    assert.ok((await qualified.migrate()).applied.length > 0);
    assert.deepEqual(await newOutbox({ pool: db.pool, table: 'two_spellings' }).migrate(), { applied: [] });
    // A search_path whose first schema exists but holds no outbox ("$user" schemas): the table and
    // its history are still public's, where search_path finds them, not current_schema()'s.
    await db.pool.query('CREATE SCHEMA IF NOT EXISTS empty_first');
    const searching = new pg.Pool({ connectionString: db.url, max: 2, options: '-c search_path=empty_first,public' });
    try {
      assert.deepEqual(await newOutbox({ pool: searching, table: 'two_spellings' }).migrate(), { applied: [] });
    } finally {
      await searching.end();
    }
  });

  test('one table, two spellings, in a schema whose name needs quoting: the bare spelling finds the qualified one’s history', async () => {
    // The bare spelling's history was looked up as regnamespace's text, which quotes ("Billing",
    // "user"), while it is written unquoted (Billing.<t>): migrate() ran outbox/0001 again and
    // failed (relation already exists) at every start.
    for (const schema of ['Billing', 'user']) {
      await db.pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      assert.ok((await newOutbox({ pool: db.pool, table: `${schema}.two_case` }).migrate()).applied.length > 0);
      const searching = new pg.Pool({ connectionString: db.url, max: 2, options: `-c search_path=${quoteIdent(schema)}` });
      try {
        assert.deepEqual(await newOutbox({ pool: searching, table: 'two_case' }).migrate(), { applied: [] }, schema);
      } finally {
        await searching.end();
      }
    }
  });

  test('a role without CREATE on the database or the schema migrates a schema a DBA already migrated: nothing to do, nothing created', async () => {
    // Least privilege, as managed PostgreSQL setups grant it: CREATE SCHEMA IF NOT EXISTS and
    // CREATE TABLE IF NOT EXISTS check the CREATE privilege before they look, and failed.
    const table = 'txoutbox.least_privilege';
    await newOutbox({ pool: db.pool, table }).migrate();
    const role = `migrate_role_${process.pid}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    const database = new URL(db.url).pathname.slice(1);
    await db.pool.query(`REVOKE CREATE ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
    await db.pool.query(`GRANT USAGE ON SCHEMA txoutbox TO ${role}`);
    await db.pool.query(`GRANT SELECT, INSERT ON txoutbox.txoutbox_migrations TO ${role}`);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'pw';
    const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    try {
      assert.deepEqual(await newOutbox({ pool, table }).migrate(), { applied: [] });
    } finally {
      await pool.end();
      await db.pool.query(`REVOKE ALL ON txoutbox.txoutbox_migrations FROM ${role}`);
      await db.pool.query(`REVOKE ALL ON SCHEMA txoutbox FROM ${role}`);
      await db.pool.query(`GRANT CREATE ON DATABASE ${quoteIdent(database)} TO PUBLIC`);
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });

  test('a dlqTable naming the outbox (or a table beside it) under another spelling is refused by migrate(), before anything is created', async () => {
    // The outbox migrated as public.<t> without a DLQ; the same table spelled bare, with the DLQ
    // spelled qualified: the DLQ's history is the outbox's, and its migrations were taken for done.
    await newOutbox({ pool: db.pool, table: 'public.spelled_twice', dlqTable: false }).migrate();
    for (const [table, dlqTable, what] of [
      [
        'spelled_twice',
        'public.spelled_twice',
        /it names the outbox table itself \("spelled_twice" is public\.spelled_twice in this database\)/,
      ],
      [
        'spelled_twice',
        'public.spelled_twice_stats',
        /it names the outbox's stats table \("spelled_twice_stats" is public\.spelled_twice_stats in this database\)/,
      ],
      [
        'fresh_twice',
        'public.fresh_twice',
        /it names the outbox table itself \("fresh_twice" is public\.fresh_twice in this database\)/,
      ],
    ] as const) {
      await assert.rejects(
        newOutbox({ pool: db.pool, table, dlqTable }).migrate(),
        (error: unknown) => error instanceof InvalidIdentifierError && error.option === 'dlqTable' && what.test(error.message),
        `${table} / ${dlqTable}`,
      );
    }
    assert.equal(await tableExists('public.fresh_twice'), false, 'nothing was created');
    assert.deepEqual(
      (await history()).filter((row) => row.table_name.includes('twice')).map((row) => row.table_name),
      Array.from({ length: 5 }, () => 'public.spelled_twice'),
    );
  });

  test('bad identifiers fail at construction, naming the limit', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ table: 'drop table x;' }, /letters, digits and underscores/],
      [{ table: 'a.b.c' }, /"table" or "schema.table"/],
      [{ table: '' }, /non-empty string/],
      [{ table: 'x'.repeat(64) }, /64 bytes long and Postgres' limit is 63 bytes/],
      [{ table: 'x'.repeat(54), dlqTable: false }, /derived name "x{54}_ready_idx" would be 64 bytes.*at most 53 bytes/],
      [{ table: 'x'.repeat(49) }, /derived name "x{49}_dlq_failed_idx" would be 64 bytes.*at most 48 bytes/],
      [{ table: `${'s'.repeat(30)}.${'t'.repeat(30)}` }, /NOTIFY channel/],
      [{ table: `txoutbox.${'x'.repeat(49)}` }, /at most 48 bytes/],
      [{ table: `public.${'x'.repeat(54)}`, dlqTable: false }, /at most 53 bytes/],
      [{ table: `${'s'.repeat(64)}.outbox` }, /64 bytes long/],
      [{ table: `${'s'.repeat(50)}.outbox` }, /NOTIFY channel "txoutbox\.s{50}\.outbox" would be 66 bytes.*at most 3 bytes/],
      [{ dlqTable: 'bad-name' }, /dlqTable/],
      // The DLQ on the outbox itself (or a table beside it): its migrations were taken for done.
      [
        { table: 'app.orders', dlqTable: 'orders' },
        /dlqTable: "app\.orders" is not a valid identifier: it names the outbox table itself/,
      ],
      [{ table: 'txoutbox.orders', dlqTable: 'orders_paused' }, /it names the outbox's pause table/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => newOutbox({ pool: db.pool, ...options }),
        (error: unknown) => error instanceof InvalidIdentifierError && message.test(error.message),
        String(message),
      );
    }
  });
});
