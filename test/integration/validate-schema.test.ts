import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { type DriftFinding, InvalidOptionError, type Outbox, SchemaDriftError } from '../../src/index.js';
import { normalizeExpression } from '../../src/schema/validate-schema.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** The findings validateSchema() reports ([] when it returns). */
async function drift(outbox: Outbox, options?: { checkAutovacuum?: boolean }): Promise<DriftFinding[]> {
  try {
    await outbox.validateSchema(options);
    return [];
  } catch (error) {
    assert.ok(error instanceof SchemaDriftError, `expected a SchemaDriftError, got ${String(error)}`);
    assert.equal(error.code, 'SCHEMA_DRIFT');
    assert.ok(error.findings.length > 0, 'a SchemaDriftError always has findings');
    return [...error.findings];
  }
}

function kinds(findings: readonly DriftFinding[]): string[] {
  return findings.map((f) => f.kind).sort();
}

/** A freshly migrated outbox (with its DLQ unless told otherwise), broken by `ddl`. */
async function migrated(table: string, ddl: string[] = [], options: { dlqTable?: string | false } = {}): Promise<Outbox> {
  const outbox = newOutbox({ pool: db.pool, table, ...options });
  await outbox.migrate();
  for (const statement of ddl) await db.pool.query(statement);
  return outbox;
}

/**
 * Runs every finding's fix as a DBA would paste it (one statement at a time: CREATE INDEX
 * CONCURRENTLY refuses a multi-statement string) and checks the schema is then clean, so no fix
 * in a finding is prose pretending to be SQL.
 */
async function applyFixes(outbox: Outbox, findings: readonly DriftFinding[], options?: { checkAutovacuum?: boolean }) {
  // One index can have two findings with the same fix (not unique and not partial): run it once.
  for (const fix of new Set(findings.map((f) => f.fix))) {
    for (const statement of fix.split(/;\s*/).filter((s) => s.trim() !== '')) await db.pool.query(statement);
  }
  assert.deepEqual(await drift(outbox, options), [], 'the schema is clean after applying every fix');
}

function assertReadable(findings: readonly DriftFinding[], table: string): void {
  for (const finding of findings) {
    assert.equal(finding.table, table);
    assert.ok(finding.message.length > 20 && finding.message.endsWith('.'), finding.message);
    assert.ok(finding.fix.length > 0, `${finding.kind} has a fix`);
  }
}

describe('validateSchema: a fresh schema is clean', () => {
  test('default table name (txoutbox.outbox), with its DLQ', async () => {
    const outbox = newOutbox({ pool: db.pool });
    await outbox.migrate();
    assert.equal(outbox.table, 'txoutbox.outbox');
    assert.deepEqual(await drift(outbox), []);
  });

  test('public.outbox, with its DLQ (where 0.1 put them), beside txoutbox.outbox', async () => {
    assert.deepEqual(await drift(await migrated('public.outbox')), []);
  });

  test('schema-qualified app.outbox, with its DLQ; a broken public.outbox of the same name is not looked at', async () => {
    await migrated('outbox_twin', ['ALTER TABLE outbox_twin DROP COLUMN timer_id']);
    const outbox = await migrated('app.outbox_twin');
    assert.deepEqual(await drift(outbox), []);
  });

  test('dlqTable: false, a custom DLQ name, and a reserved word as table name', async () => {
    assert.deepEqual(await drift(await migrated('v_nodlq', [], { dlqTable: false })), []);
    // migrate() creates the DLQ's schema too, not only the outbox's.
    assert.deepEqual(await drift(await migrated('v_custom', [], { dlqTable: 'ops.v_custom_dead' })), []);
    assert.deepEqual(await drift(await migrated('user')), []);
  });
});

describe('validateSchema: one finding kind per breakage', () => {
  test('missing_table: nothing migrated, both tables reported; a view is not a table', async () => {
    const findings = await drift(newOutbox({ pool: db.pool, table: 'app.v_absent' }));
    assert.deepEqual(
      findings.map((f) => `${f.table}:${f.kind}`),
      [
        'app.v_absent:missing_table',
        'app.v_absent_paused:missing_table',
        'app.v_absent_stats:missing_table',
        'app.v_absent_dlq:missing_table',
      ],
    );
    assert.match(findings[0]!.message, /does not exist in schema app/);
    assert.match(findings[0]!.fix, /migrate/);

    const outbox = await migrated('v_view', [
      'ALTER TABLE v_view RENAME TO v_view_real',
      'CREATE VIEW v_view AS SELECT * FROM v_view_real',
    ]);
    const viewFindings = await drift(outbox);
    assert.deepEqual(kinds(viewFindings), ['missing_table']);
    assert.match(viewFindings[0]!.message, /v_view is a view, not a table/);
  });

  test('missing_column', async () => {
    const outbox = await migrated('v_col', ['ALTER TABLE v_col DROP COLUMN last_attempt_at']);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_column']);
    assert.match(findings[0]!.message, /column last_attempt_at is missing; txoutbox expects last_attempt_at timestamptz/);
    assertReadable(findings, 'v_col');
    await applyFixes(outbox, findings);
  });

  test('wrong_type', async () => {
    const outbox = await migrated('v_type', ['ALTER TABLE v_type ALTER COLUMN attempts_count TYPE bigint']);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['wrong_type']);
    assert.match(findings[0]!.message, /column attempts_count is bigint; txoutbox expects integer/);
    assertReadable(findings, 'v_type');
    await applyFixes(outbox, findings);
  });

  test('wrong_nullability, both ways', async () => {
    const outbox = await migrated('v_null', [
      'ALTER TABLE v_null ALTER COLUMN next_attempt_at DROP NOT NULL',
      'ALTER TABLE v_null ALTER COLUMN timer_id SET NOT NULL',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['wrong_nullability', 'wrong_nullability']);
    const [first, second] = findings;
    assert.match(first!.message, /next_attempt_at allows NULL; txoutbox expects NOT NULL \(Load-bearing default/);
    assert.match(second!.message, /timer_id is NOT NULL; txoutbox expects it to allow NULL/);
    assertReadable(findings, 'v_null');
    await applyFixes(outbox, findings);
  });

  test('missing_default: an id without identity and a created_at without DEFAULT fail every INSERT, and are reported', async () => {
    // Reported (review): a schema made by another tool without them validated clean while every
    // publish failed (23502), and every DLQ move with the DLQ's id.
    const outbox = await migrated('v_default', [
      'ALTER TABLE v_default ALTER COLUMN id DROP IDENTITY',
      'ALTER TABLE v_default ALTER COLUMN created_at DROP DEFAULT',
      'ALTER TABLE v_default_dlq ALTER COLUMN id DROP IDENTITY',
    ]);
    await db.pool.query(`INSERT INTO v_default (id, queue, payload, created_at) VALUES (41, 'q', '\\x7b7d', now())`);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_default', 'missing_default', 'missing_default']);
    assert.match(
      findings[0]!.message,
      /column id is not an identity column; txoutbox expects id bigint GENERATED ALWAYS AS IDENTITY/,
    );
    assert.match(
      findings[1]!.message,
      /column created_at has no default; txoutbox expects created_at timestamptz NOT NULL DEFAULT now\(\)/,
    );
    assertReadable(findings.slice(0, 2), 'v_default');
    await applyFixes(outbox, findings);
    // The identity starts past the rows already there.
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO v_default (queue, payload) VALUES ('q', '\\x7b7d') RETURNING id::text AS id`,
    );
    assert.equal(rows[0]?.id, '42');
    await outbox.publish(db.pool, 'q', { after: 'the fix' }, { autocommit: true });
  });

  test('missing_index; a renamed index still counts (matched by columns)', async () => {
    const outbox = await migrated('v_idx', [
      'DROP INDEX v_idx_ready_idx',
      'ALTER INDEX v_idx_lease_idx RENAME TO whatever_dba_likes',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_index']);
    assert.match(findings[0]!.message, /there is no index on \(queue, next_attempt_at, id\) WHERE acquired_token IS NULL/);
    assert.match(
      findings[0]!.fix,
      /^CREATE INDEX CONCURRENTLY "v_idx_ready_idx" ON "v_idx" \(queue, next_attempt_at, id\) WHERE acquired_token IS NULL;$/,
    );
    assertReadable(findings, 'v_idx');
    await applyFixes(outbox, findings);
  });

  test('missing_index: the primary key', async () => {
    const outbox = await migrated('v_pk', ['ALTER TABLE v_pk DROP CONSTRAINT v_pk_pkey']);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_index']);
    assert.match(findings[0]!.message, /primary key on \(id\)/);
    await applyFixes(outbox, findings);
  });

  test('index_not_partial', async () => {
    const outbox = await migrated('v_full', [
      'DROP INDEX v_full_lease_idx',
      'CREATE INDEX v_full_lease_idx ON v_full (queue, acquired_at)',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['index_not_partial']);
    assert.match(
      findings[0]!.message,
      /index public\.v_full_lease_idx on \(queue, acquired_at\) is not partial; txoutbox expects WHERE acquired_token IS NOT NULL/,
    );
    assertReadable(findings, 'v_full');
    await applyFixes(outbox, findings);
  });

  test('index_wrong_predicate', async () => {
    const outbox = await migrated('v_pred', [
      'DROP INDEX v_pred_ready_idx',
      'CREATE INDEX v_pred_ready_idx ON v_pred (queue, next_attempt_at, id) WHERE acquired_token IS NOT NULL',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['index_wrong_predicate']);
    assert.match(
      findings[0]!.message,
      /has the predicate WHERE \(acquired_token IS NOT NULL\); txoutbox expects WHERE acquired_token IS NULL/,
    );
    assertReadable(findings, 'v_pred');
    await applyFixes(outbox, findings);
  });

  test('index_not_unique', async () => {
    const outbox = await migrated('v_uq', [
      'DROP INDEX v_uq_timer_uq',
      'CREATE INDEX v_uq_timer_uq ON v_uq (queue, timer_id) WHERE timer_id IS NOT NULL',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['index_not_unique']);
    assert.match(
      findings[0]!.message,
      /v_uq_timer_uq on \(queue, timer_id\) is not UNIQUE\. Purpose: At most one live row per \(queue, timer_id\): the ON CONFLICT arbiter/,
    );
    assertReadable(findings, 'v_uq');
    await applyFixes(outbox, findings);
  });

  test('an index that is not unique and not partial yields both findings', async () => {
    const outbox = await migrated('v_uq2', ['DROP INDEX v_uq2_timer_uq', 'CREATE INDEX ON v_uq2 (queue, timer_id)']);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['index_not_partial', 'index_not_unique']);
    await applyFixes(outbox, findings);
  });

  test('missing_check; matched by expression, so a renamed lease CHECK still counts and a different one does not', async () => {
    const outbox = await migrated('v_ck', ['ALTER TABLE v_ck DROP CONSTRAINT v_ck_lease_ck']);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_check']);
    assert.match(findings[0]!.message, /no CHECK constraint enforces \(acquired_token IS NULL\) = \(acquired_at IS NULL\)/);
    assertReadable(findings, 'v_ck');
    await applyFixes(outbox, findings);

    const renamed = await migrated('v_ck2', [
      'ALTER TABLE v_ck2 DROP CONSTRAINT v_ck2_lease_ck',
      'ALTER TABLE v_ck2 ADD CONSTRAINT ck_v_ck2_lease CHECK (acquired_token IS NULL = (acquired_at IS NULL))',
    ]);
    assert.deepEqual(await drift(renamed), []);

    const different = await migrated('v_ck3', [
      'ALTER TABLE v_ck3 DROP CONSTRAINT v_ck3_lease_ck',
      'ALTER TABLE v_ck3 ADD CONSTRAINT v_ck3_lease_ck CHECK (acquired_token IS NULL OR acquired_at IS NOT NULL)',
    ]);
    assert.deepEqual(kinds(await drift(different)), ['missing_check']);
  });

  test('the DLQ table is checked too: columns, index and reason CHECK', async () => {
    const outbox = await migrated('v_dlq', [
      'ALTER TABLE v_dlq_dlq DROP COLUMN failure_reason',
      'DROP INDEX v_dlq_dlq_failed_idx',
      'ALTER TABLE v_dlq_dlq ALTER COLUMN last_exception TYPE varchar(100)',
    ]);
    const findings = await drift(outbox);
    assert.deepEqual(kinds(findings), ['missing_check', 'missing_column', 'missing_index', 'wrong_type']);
    assertReadable(findings, 'v_dlq_dlq');
    assert.match(findings.find((f) => f.kind === 'wrong_type')!.message, /character varying\(100\); txoutbox expects text/);
    await applyFixes(outbox, findings);
  });
});

describe('validateSchema: reporting', () => {
  test('several breakages on both tables are all reported in one error', async () => {
    const outbox = await migrated('app.v_many', [
      'ALTER TABLE app.v_many DROP COLUMN first_attempt_at',
      'ALTER TABLE app.v_many ALTER COLUMN deliveries_count TYPE bigint',
      'ALTER TABLE app.v_many ALTER COLUMN queue DROP NOT NULL',
      'DROP INDEX app.v_many_ready_idx',
      'DROP INDEX app.v_many_lease_idx',
      'CREATE INDEX v_many_lease_idx ON app.v_many (queue, acquired_at)',
      'DROP INDEX app.v_many_timer_uq',
      'CREATE UNIQUE INDEX v_many_timer_uq ON app.v_many (queue, timer_id) WHERE timer_id IS NULL',
      'ALTER TABLE app.v_many DROP CONSTRAINT v_many_lease_ck',
      'ALTER TABLE app.v_many_dlq DROP COLUMN failed_at',
    ]);
    const error = await outbox.validateSchema().then(
      () => assert.fail('expected a SchemaDriftError'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof SchemaDriftError);
    assert.deepEqual(
      error.findings.map((f) => `${f.table}:${f.kind}`),
      [
        // Columns in table order: queue, then first_attempt_at, then deliveries_count.
        'app.v_many:wrong_nullability',
        'app.v_many:missing_column',
        'app.v_many:wrong_type',
        'app.v_many:missing_index',
        'app.v_many:index_not_partial',
        'app.v_many:index_wrong_predicate',
        'app.v_many:missing_check',
        // Dropping failed_at also dropped the indexes on (queue, failed_at) and (failed_at, id).
        'app.v_many_dlq:missing_column',
        'app.v_many_dlq:missing_index',
        'app.v_many_dlq:missing_index',
      ],
    );
    assert.match(error.message, /\(10 finding\(s\)\)/);
    for (const finding of error.findings) assert.ok(error.message.includes(finding.fix), 'the message carries every fix');
    await applyFixes(outbox, error.findings);
  });

  test('checkAutovacuum must be a boolean', async () => {
    const outbox = await migrated('v_opt');
    await assert.rejects(outbox.validateSchema({ checkAutovacuum: 'yes' as unknown as boolean }), InvalidOptionError);
    // A misspelt key skipped the check it asked for, and the schema passed; null threw a TypeError.
    await assert.rejects(
      outbox.validateSchema({ checkAutoVacuum: true } as never),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'checkAutoVacuum',
    );
    await assert.rejects(outbox.validateSchema(null as never), InvalidOptionError);
  });

  test('expressions are compared in one normal form', () => {
    assert.equal(normalizeExpression('(acquired_token IS NULL)'), normalizeExpression('acquired_token IS NULL'));
    assert.equal(
      normalizeExpression("failure_reason IN ('max_deliveries', 'rejected')"),
      normalizeExpression("(failure_reason = ANY (ARRAY['max_deliveries'::text, 'rejected'::text]))"),
    );
    assert.notEqual(normalizeExpression('timer_id IS NULL'), normalizeExpression('timer_id IS NOT NULL'));
    assert.notEqual(
      normalizeExpression("r IN ('Rejected')"),
      normalizeExpression("r IN ('rejected')"),
      'literals keep their case',
    );
  });
});

describe('autovacuum', () => {
  test('autovacuumDdl() quotes the qualified name and sets scale factors 0 with fixed thresholds', () => {
    const outbox = newOutbox({ pool: db.pool, table: 'app.user' });
    assert.equal(
      outbox.autovacuumDdl(),
      'ALTER TABLE "app"."user" SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, ' +
        'autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000, ' +
        'autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);',
    );
  });

  test('checkAutovacuum reports an untuned table until autovacuumDdl() is applied; off by default', async () => {
    const outbox = await migrated('app.v_vac');
    assert.deepEqual(await drift(outbox), [], 'not checked unless asked');
    const findings = await drift(outbox, { checkAutovacuum: true });
    assert.deepEqual(
      findings.map((f) => `${f.table}:${f.kind}`),
      ['app.v_vac:autovacuum_not_tuned'],
      'the outbox only: the DLQ is append-mostly',
    );
    assert.match(findings[0]!.message, /autovacuum_vacuum_scale_factor is unset/);
    assert.equal(findings[0]!.fix, outbox.autovacuumDdl());

    await db.pool.query(outbox.autovacuumDdl());
    assert.deepEqual(await drift(outbox, { checkAutovacuum: true }), []);
  });

  test('a DBA’s own thresholds are respected, a non-zero scale factor or disabled autovacuum is not', async () => {
    const outbox = await migrated('v_vac2');
    await db.pool.query(outbox.autovacuumDdl());
    await db.pool.query('ALTER TABLE v_vac2 SET (autovacuum_vacuum_threshold = 250, autovacuum_analyze_threshold = 20000)');
    assert.deepEqual(await drift(outbox, { checkAutovacuum: true }), []);

    await db.pool.query('ALTER TABLE v_vac2 SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_enabled = false)');
    const findings = await drift(outbox, { checkAutovacuum: true });
    assert.deepEqual(kinds(findings), ['autovacuum_not_tuned']);
    assert.match(findings[0]!.message, /autovacuum_enabled is off/);
    assert.match(findings[0]!.message, /autovacuum_vacuum_scale_factor is 0\.05 \(want 0/);
    await db.pool.query('ALTER TABLE v_vac2 RESET (autovacuum_enabled)');
    await applyFixes(outbox, findings, { checkAutovacuum: true });
    // PostgreSQL reads any unambiguous prefix of false, no or off as false, and keeps it as written.
    for (const off of ['f', 'N', 'of']) {
      await db.pool.query(`ALTER TABLE v_vac2 SET (autovacuum_enabled = '${off}')`);
      assert.match((await drift(outbox, { checkAutovacuum: true }))[0]?.message ?? '', /autovacuum_enabled is off/, off);
    }
  });

  test('autovacuum findings join the schema findings in the same error', async () => {
    const outbox = await migrated('v_vac3', ['ALTER TABLE v_vac3 DROP COLUMN timer_id']);
    // Dropping timer_id also dropped the timer index.
    assert.deepEqual(kinds(await drift(outbox, { checkAutovacuum: true })), [
      'autovacuum_not_tuned',
      'missing_column',
      'missing_index',
    ]);
  });
});
