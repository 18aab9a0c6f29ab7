import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';

import { jsonLine } from '../../src/cli/json-output.js';
import { main } from '../../src/cli/main.js';
import { pauseText, renderPeek } from '../../src/cli/queue-command.js';
import { renderSchemaCheck } from '../../src/cli/schema-command.js';
import { renderStatus } from '../../src/cli/status-command.js';
import { groupDigits, humanDuration, renderTable } from '../../src/cli/text-table.js';
import type { DriftFinding } from '../../src/errors.js';
import type { PeekedPreview } from '../../src/queues/peek.js';
import type { QueueStatus } from '../../src/queues/queue-status.js';
import { terminalSafe } from '../../src/util/terminal-safe.js';

// The renderers are pure: these reports are made by hand, so every branch of the human output is
// checked without a database or a terminal (the integration tests check the commands end to end).

const AT = new Date('2026-01-02T03:04:05.000Z');
const EXACT = { ready: false, scheduled: false, leased: false, dlq: false } as const;

function queue(overrides: Partial<QueueStatus> & { queue: string }): QueueStatus {
  return {
    ready: 0,
    scheduled: 0,
    leased: 0,
    dlq: 0,
    estimated: EXACT,
    oldestReadyAgeMs: 0,
    paused: false,
    pausedAt: null,
    pauseReason: null,
    throughput: [],
    handledPerMinute: 0,
    ...overrides,
  };
}

describe('renderTable', () => {
  test('pads each column to its widest cell, numbers to the right, and trims trailing spaces', () => {
    const out = renderTable(
      [{ header: 'NAME' }, { header: 'N', align: 'right' }, { header: 'NOTE' }],
      [
        ['a', '1', ''],
        ['longer', '1,000', 'x'],
      ],
    );
    assert.equal(out, 'NAME        N  NOTE\na           1\nlonger  1,000  x\n');
  });

  test('a newline or tab in a cell cannot break the row', () => {
    assert.equal(renderTable([{ header: 'BODY' }], [['line 1\nline 2\tend']]), 'BODY\nline 1 line 2 end\n');
  });

  test('numbers and durations', () => {
    assert.equal(groupDigits(12_000), '12,000');
    assert.equal(groupDigits(2.25), '2.3');
    assert.equal(humanDuration(0), '0s');
    assert.equal(humanDuration(59_999), '59s');
    assert.equal(humanDuration(192_000), '3m 12s');
    assert.equal(humanDuration(7_500_000), '2h 5m');
    assert.equal(humanDuration(3 * 86_400_000), '3d');
  });
});

describe('renderStatus', () => {
  test('one row per queue; estimates marked ~ with a legend; no DLQ is -, nothing ready is -; pauses listed below', () => {
    const out = renderStatus({
      at: AT,
      queues: [
        queue({
          queue: 'orders',
          ready: 12_000,
          scheduled: 3,
          leased: 8,
          dlq: 1,
          estimated: { ...EXACT, ready: true },
          oldestReadyAgeMs: 192_000,
          handledPerMinute: 41.5,
        }),
        queue({
          queue: 'mails',
          dlq: undefined,
          paused: true,
          pausedAt: AT,
          pauseReason: 'smtp down',
        }),
      ],
    });
    const lines = out.split('\n');
    assert.match(lines[0] ?? '', /^QUEUE\s+READY\s+SCHEDULED\s+LEASED\s+DLQ\s+OLDEST READY\s+HANDLED\/MIN\s+PAUSED$/);
    assert.match(lines[1] ?? '', /^orders\s+~12,000\s+3\s+8\s+1\s+3m 12s\s+41\.5$/);
    assert.match(lines[2] ?? '', /^mails\s+0\s+0\s+0\s+-\s+-\s+0\s+paused$/);
    assert.equal(lines[3], `mails is paused since ${AT.toISOString()}: "smtp down" (txoutbox queue resume mails)`);
    assert.match(lines[4] ?? '', /^~ = planner estimate/);
    assert.equal(lines[5], `as of ${AT.toISOString()}`);
    // Right-aligned: the READY column's last digits sit under the header's last letter.
    const end = (line: string | undefined, pattern: RegExp): number => pattern.exec(line ?? '')?.[0].length ?? -1;
    assert.equal(end(lines[1], /^orders\s+~12,000/), end(lines[0], /^QUEUE\s+READY/));
    assert.equal(end(lines[2], /^mails\s+0/), end(lines[0], /^QUEUE\s+READY/));
  });

  test('the suggested resume command is one shell word per argument, pasted as is', () => {
    // Reported (review): `reports $(touch /tmp/x)` was printed bare, so pasting it ran the substitution.
    const cases: [string, string][] = [
      ['mails', 'txoutbox queue resume mails'],
      ['a b $(x)', "txoutbox queue resume 'a b $(x)'"],
      ["it's", "txoutbox queue resume 'it'\\''s'"],
      ['-x', 'txoutbox queue resume -- -x'],
    ];
    for (const [name, command] of cases) {
      const out = renderStatus({ at: AT, queues: [queue({ queue: name, paused: true, pausedAt: AT })] });
      assert.ok(out.includes(`(${command})`), out);
      const args = execFileSync('sh', ['-c', `printf '%s\\n' ${command.replace('txoutbox ', '')}`], { encoding: 'utf8' });
      assert.equal(
        args
          .split('\n')
          .filter((a) => a !== '' && a !== '--')
          .at(-1),
        name,
        command,
      );
    }
  });

  test('exact counts need no legend; an empty report says so', () => {
    assert.doesNotMatch(renderStatus({ at: AT, queues: [queue({ queue: 'q', ready: 1 })] }), /~/);
    assert.equal(
      renderStatus({ at: AT, queues: [] }),
      `no queue has pending rows, dead letters, a pause or recent throughput\nas of ${AT.toISOString()}\n`,
    );
  });
});

describe('renderPeek and pauseText', () => {
  const row = (id: string, state: PeekedPreview['state'], bodyPreview: string, truncated = false): PeekedPreview => ({
    id,
    queue: 'q',
    payloadBytes: Buffer.byteLength(bodyPreview),
    headers: {},
    createdAt: AT,
    nextAttemptAt: AT,
    firstAttemptAt: null,
    lastAttemptAt: null,
    attemptsCount: 0,
    deliveriesCount: state === 'leased' ? 1 : 0,
    acquiredAt: state === 'leased' ? AT : null,
    timerId: null,
    state,
    bodyPreview,
    bodyPreviewTruncated: truncated,
    payloadHead: Buffer.from(bodyPreview),
  });

  test('one line per row, the body cut at 60 characters with an ellipsis, the next cursor below', () => {
    const out = renderPeek('q', {
      rows: [row('1', 'ready', '{"a":1}'), row('22', 'leased', 'x'.repeat(100))],
      nextCursor: 'abc',
    });
    const lines = out.split('\n');
    assert.match(lines[0] ?? '', /^\s*ID\s+STATE\s+CREATED AT\s+DUE AT\s+LEASED AT\s+DELIVERIES\s+BYTES\s+BODY$/);
    assert.match(lines[1] ?? '', /^ 1\s+ready\s+\S+\s+\S+\s+0\s+7\s+\{"a":1\}$/);
    assert.match(lines[2] ?? '', new RegExp(`^22\\s+leased\\s+\\S+\\s+\\S+\\s+${AT.toISOString()}\\s+1\\s+100\\s+x{60}…$`));
    assert.equal(lines[3], 'more: --cursor abc');
    assert.equal(renderPeek('q', { rows: [row('1', 'ready', 'short', true)], nextCursor: null }).includes('short…'), true);
    assert.equal(renderPeek('q', { rows: [], nextCursor: null }), "no pending rows in queue 'q'\n");
  });

  test('pause and resume say what changed', () => {
    const paused = { queue: 'q', paused: true, pausedAt: AT, reason: 'deploy', changed: true };
    assert.match(pauseText(paused), /^paused queue 'q' \(reason: "deploy"\): subscribers stop claiming it/);
    assert.match(pauseText({ ...paused, changed: false }), /^queue 'q' was already paused since 2026-01-02T03:04:05.000Z/);
    const resumed = { queue: 'q', paused: false, pausedAt: null, reason: null, changed: true };
    assert.match(pauseText(resumed), /^resumed queue 'q'/);
    assert.match(pauseText({ ...resumed, changed: false }), /^queue 'q' was not paused/);
  });
});

describe('renderSchemaCheck', () => {
  const finding = (kind: DriftFinding['kind']): DriftFinding => ({
    table: 'txoutbox.outbox',
    kind,
    message: `${kind}.`,
    fix: `fix ${kind};`,
  });

  test('clean; advisory only (still ok); drift with advisories', () => {
    const tables = { table: 'txoutbox.outbox', dlqTable: 'txoutbox.outbox_dlq' };
    assert.equal(
      renderSchemaCheck({ ...tables, drift: [], advisories: [] }),
      'ok: the schema of txoutbox.outbox (DLQ txoutbox.outbox_dlq) is what txoutbox expects, autovacuum tuned\n',
    );
    const advisory = renderSchemaCheck({ ...tables, drift: [], advisories: [finding('autovacuum_not_tuned')] });
    assert.match(advisory, /^ok: .* is what txoutbox expects\nadvisory: 1 finding \(does not fail the check\)\n/);
    assert.match(
      advisory,
      /- txoutbox.outbox \[autovacuum_not_tuned\]: autovacuum_not_tuned.\n {2}fix: fix autovacuum_not_tuned;\n$/,
    );
    const drift = renderSchemaCheck({
      table: 'app.outbox',
      dlqTable: null,
      drift: [finding('missing_index'), finding('missing_column')],
      advisories: [finding('autovacuum_not_tuned')],
    });
    assert.match(
      drift,
      /^drift: 2 findings in the schema of app.outbox \(no DLQ\) \(exit 1\)\n- txoutbox.outbox \[missing_index\]/,
    );
    assert.match(drift, /\nadvisory: 1 finding/);
  });
});

// A publisher can put anything in a queue name, a body, a header or an exception. Printed raw, an
// ESC or C1 sequence drives the operator's terminal: OSC 52 writes the clipboard, CSI 2J clears
// the screen, U+009B is a one-byte CSI. Text output shows each as a visible escape instead.
const OSC52 = '\x1b]52;c;ZWNobyBwd25lZA==\x07';
const CLEAR = '\x1b[2J';
const C1_CSI = '\u009b31m';
const HOSTILE = `evil${OSC52}${CLEAR}${C1_CSI}\x7f\r`;

/** No C0 control but newline and tab, no DEL, no C1: nothing a terminal acts on. */
function assertTerminalSafe(out: string, what: string): void {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.exec(out);
  assert.equal(
    raw,
    null,
    `${what}: a raw control character U+${raw?.[0].charCodeAt(0).toString(16).padStart(4, '0')} in ${JSON.stringify(out)}`,
  );
}

describe('hostile strings reach the terminal as visible escapes, never as controls', () => {
  test('terminalSafe: C0 (but newline and tab when lines are kept), DEL and C1 become \\u escapes', () => {
    assert.equal(terminalSafe(`a${CLEAR}b\u009bc\x7fd`), 'a\\u001b[2Jb\\u009bc\\u007fd');
    assert.equal(terminalSafe('one\ntwo\tthree'), 'one\\u000atwo\\u0009three', 'one line: newline and tab escaped too');
    assert.equal(terminalSafe('one\ntwo\tthree\r', { keepLines: true }), 'one\ntwo\tthree\\u000d');
    assert.equal(terminalSafe('plain ascii, ünïcode ✓'), 'plain ascii, ünïcode ✓');
  });

  test('table cells, status (a hostile queue name and pause reason), peek and pause texts', () => {
    assertTerminalSafe(renderTable([{ header: 'Q' }], [[HOSTILE]]), 'renderTable');
    const status = renderStatus({
      at: AT,
      queues: [queue({ queue: HOSTILE, ready: 1, paused: true, pausedAt: AT, pauseReason: HOSTILE })],
    });
    assertTerminalSafe(status, 'renderStatus');
    assert.ok(status.includes('evil\\u001b]52;c;'), 'shown, escaped');
    const state = { queue: HOSTILE, paused: true, pausedAt: AT, reason: HOSTILE, changed: true };
    assertTerminalSafe(pauseText(state), 'pauseText');
    assertTerminalSafe(pauseText({ ...state, changed: false }), 'pauseText (already paused)');
    assertTerminalSafe(pauseText({ ...state, paused: false }), 'pauseText (resumed)');
    assert.equal(pauseText(state).split('\n').length, 2, 'one line');
    const peeked: PeekedPreview = {
      id: '1',
      queue: HOSTILE,
      payloadBytes: Buffer.byteLength(HOSTILE),
      headers: { [HOSTILE]: HOSTILE },
      createdAt: AT,
      nextAttemptAt: AT,
      firstAttemptAt: null,
      lastAttemptAt: null,
      attemptsCount: 0,
      deliveriesCount: 0,
      acquiredAt: null,
      timerId: null,
      state: 'ready',
      bodyPreview: HOSTILE,
      bodyPreviewTruncated: false,
      payloadHead: Buffer.from(HOSTILE),
    };
    assertTerminalSafe(renderPeek(HOSTILE, { rows: [peeked], nextCursor: null }), 'renderPeek');
    assertTerminalSafe(renderPeek(HOSTILE, { rows: [], nextCursor: null }), 'renderPeek (empty)');
    const finding: DriftFinding = { table: HOSTILE, kind: 'missing_index', message: HOSTILE, fix: HOSTILE };
    assertTerminalSafe(
      renderSchemaCheck({ table: HOSTILE, dlqTable: HOSTILE, drift: [finding], advisories: [finding] }),
      'renderSchemaCheck',
    );
  });

  test('an error quoting what was typed (bad usage, before any database) is printed escaped', async () => {
    let err = '';
    const io = { env: {}, out: () => undefined, err: (text: string) => (err += text) };
    assert.equal(await main(['status', '--minutes', HOSTILE], io), 2);
    assertTerminalSafe(err, 'usage error');
    assert.match(err, /^txoutbox: --minutes: expected a whole number, got 'evil\\u001b\]52;c;/);
  });

  test('--json: the same value back, and no raw control either (JSON.stringify leaves DEL and C1 raw)', () => {
    const line = jsonLine({ queue: HOSTILE, headers: { [HOSTILE]: HOSTILE } });
    assertTerminalSafe(line, 'jsonLine');
    assert.deepEqual(JSON.parse(line), { queue: HOSTILE, headers: { [HOSTILE]: HOSTILE } });
  });
});
