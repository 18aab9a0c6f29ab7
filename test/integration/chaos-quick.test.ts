/**
 * The fault-injection harness (chaos/, RELIABILITY.md): `npm run chaos -- --quick` end to end on
 * the product as it is (its own embedded servers; SIGKILL of runner consumers, pg_terminate_backend
 * storms, rolling deploys of the runner and of an application process, slow handlers under a short
 * lease: the last two fail without issue 13 items 2 and 1 fixed; redis-server SIGKILLed under two
 * relay workers, accounted for from the stream), and the pieces whose mistakes would make every
 * verdict wrong: the accountings (by handler runs, and at the broker), what is made of a runner's
 * exit and of its consumers' exits, and the TCP proxy that fakes a frozen or half-open network.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { account, type MessageRow } from '../../chaos/lib/accounting.js';
import type { Arrival } from '../../chaos/lib/broker.js';
import { FaultLog } from '../../chaos/lib/faults.js';
import { accountRelay } from '../../chaos/lib/relay-accounting.js';
import type { ChaosResults } from '../../chaos/lib/report.js';
import { BROKEN_HANDLER_ERROR, type LogLine, stopOutcome, unexplainedConsumerExits } from '../../chaos/lib/runner-process.js';
import { ScenarioGuard, ScenarioOver } from '../../chaos/lib/scenario-guard.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

test('npm run chaos -- --quick: every quick scenario passes, every message accounted for', { timeout: 330_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'txoutbox-chaos-quick-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DATABASE_URL; // the harness starts a server per scenario: it stops and freezes them
    delete env.NODE_TEST_CONTEXT;
    const started = Date.now();
    const run = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', join('chaos', 'main.ts'), '--quick', '--out', out],
      {
        env,
        maxBuffer: 16 * 1024 * 1024,
        timeout: 320_000,
      },
    ).catch((error: unknown) => error as { stdout: string; stderr: string; code: number });
    const files = readdirSync(out).filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 1, `one results JSON; output:\n${run.stdout}\n${run.stderr}`);
    const results = JSON.parse(readFileSync(join(out, files[0]!), 'utf8')) as ChaosResults;
    const report = readFileSync(join(out, files[0]!.replace(/\.json$/, '.md')), 'utf8');
    assert.equal(results.mode, 'quick');
    assert.deepEqual(
      results.scenarios.map((s) => s.id),
      ['kill-children', 'terminate-backends', 'rolling-deploy', 'app-deploy', 'slow-handlers', 'relay-redis-kill'],
    );
    for (const scenario of results.scenarios) {
      const a = scenario.accounting;
      assert.ok(a !== null && a.messages > 100, `${scenario.id}: messages published and accounted for\n${report}`);
      assert.equal(a.chainsComplete, a.chains, `${scenario.id}: every chain complete\n${report}`);
      // The findings and the accounting's examples (the lost, duplicated, stuck rows) first: a
      // failure's message is cut after its first lines in some CI logs.
      assert.ok(
        scenario.pass,
        `${scenario.id} passes; findings: ${scenario.findings.join(' | ') || 'none'}; ` +
          `examples: ${a.examples.join(' | ') || 'none'}; notes: ${scenario.notes.join(' | ')}\n${report}`,
      );
    }
    assert.match(run.stdout, /\| scenario \| messages \| lost \|/, 'the table is printed at the end');
    t.diagnostic(`chaos --quick took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

function row(id: string, key: string, runs: number[], extra: Partial<MessageRow> = {}): MessageRow {
  return {
    id,
    key,
    poison: false,
    published_at: 1_000,
    runs: runs.map((at, i) => ({ pid: 1, delivery: i + 1, startedAt: at, at: at + 5, transactional: false })),
    dlq_reasons: [],
    dlq_exception: null,
    in_table: false,
    ...extra,
  };
}

test('the accounting: lost, stuck, unexpected DLQ rows, and duplicates explained only by a nearby fault', () => {
  const faults = new FaultLog();
  faults.faults.push({ kind: 'SIGKILL', detail: 'a consumer', start: 50_000, end: 50_000, explains: true });
  faults.faults.push({ kind: 'SIGTERM', detail: 'a deploy', start: 90_000, end: 90_000, explains: false });
  const rows: MessageRow[] = [
    row('1', '1:1', [2_000]),
    row('2', '1:2', [3_000]),
    row('3', '2:1', []), // never ran, gone: lost
    row('4', '3:1', [], { in_table: true }), // still there: stuck
    row('5', '4:1', [48_000, 56_000]), // ran again after the kill, within a lease: explained
    row('6', '5:1', [88_000, 95_000]), // ran again after a SIGTERM only: unexplained
    row('7', '6:1', [], { dlq_reasons: ['max_deliveries'] }), // ended without running
    row('8', '40:1', [], { poison: true, dlq_reasons: ['rejected'] }), // meant to fail
    row('9', '80:1', [], { poison: true }), // meant to fail, but neither in the DLQ nor in the table: lost
    // Ran again after a transactional run committed, in the kill's window: effects twice, never explained.
    row('10', '7:1', [], {
      runs: [
        { pid: 2, delivery: 1, startedAt: 48_000, at: 48_005, transactional: true },
        { pid: 1, delivery: 2, startedAt: 56_000, at: 56_005, transactional: false },
      ],
    }),
    // A row-lock batch's run that started before a transactional run and wrote after it (its batch
    // rolled back under it while the transactional run waited for the row's lock): explained.
    row('12', '9:1', [], {
      runs: [
        { pid: 2, delivery: 2, startedAt: 50_060, at: 50_105, transactional: true },
        { pid: 1, delivery: 1, startedAt: 50_050, at: 50_200, transactional: false },
      ],
    }),
    // A plain run, then a transactional one after the kill: explained, as any redelivery.
    row('11', '8:1', [], {
      runs: [
        { pid: 1, delivery: 1, startedAt: 48_000, at: 48_005, transactional: false },
        { pid: 2, delivery: 2, startedAt: 56_000, at: 56_005, transactional: true },
      ],
    }),
  ];
  const a = account(rows, [], faults, 5_000, 2, { outbox: 0, dlq: 0 });
  assert.equal(a.messages, 12);
  assert.equal(a.lost, 2);
  assert.equal(a.stuck, 1);
  assert.equal(a.duplicates, 5);
  assert.equal(a.explained, 3);
  assert.equal(a.effectsTwice, 1);
  assert.equal(a.transactionalRuns, 3);
  assert.equal(a.dlqExpected, 1);
  assert.equal(a.dlqUnexpected, 1);
  assert.equal(a.chains, 9, 'roots that are not poison');
  assert.equal(a.chainsComplete, 1, 'only chain 1 reached its second link');
  const failures = [
    { id: '1', pid: 1, error_name: 'OutboxStoppedError', error: 'refused', at: 50_500 },
    { id: '2', pid: 1, error_name: 'DatabaseError', error: 'terminated', at: 50_500 },
    { id: '2', pid: 1, error_name: 'DatabaseError', error: 'terminated', at: 70_000 },
  ];
  assert.equal(account(rows, failures, faults, 5_000, 2, { outbox: 0, dlq: 0 }).handlerErrorsUnexpected, 2);
});

test('the relay accounting: what the broker stored, duplicates explained only where the broker cannot deduplicate, per-key order', () => {
  const faults = new FaultLog();
  faults.faults.push({ kind: 'broker killed', detail: 'SIGKILL', start: 50_000, end: 52_000, explains: true });
  const rows: MessageRow[] = [
    row('1', '1:1', []),
    row('2', '2:1', []),
    row('3', '3:1', []), // never stored, gone: lost
    row('4', '4:1', [], { in_table: true }), // never stored, still there: stuck
    row('5', '5:1', [], { dlq_reasons: ['rejected'] }), // a relay refuses nothing the harness publishes
    row('6', '6:1', []),
    row('7', '7:1', []),
    row('8', '8:1', []),
    row('9', '9:1', []),
  ];
  const stored = (id: string, key: string, at: number): Arrival => ({
    messageId: `public.outbox:${id}`,
    at,
    body: JSON.stringify({ key }),
  });
  const arrivals: Arrival[] = [
    stored('1', '1:1', 2_000),
    stored('2', '2:1', 49_000),
    stored('2', '2:1', 53_000), // again after the kill: explained where the broker cannot deduplicate
    stored('9', '9:1', 52_050), // held by the fault, stored as it was lifted …
    stored('9', '9:1', 52_100), // … and its retry: explained too
    stored('1', '1:1', 90_000), // again with no fault near: never explained
    stored('7', '7:1', 91_000), // key k1 …
    stored('6', '6:1', 92_000), // … then an earlier row of k1: out of order
    stored('8', 'other:1', 93_000), // a body that is not the committed one
    stored('99', '99:1', 94_000), // never committed
  ];
  const orderingKeyOf = (key: string): string | undefined => (key === '6:1' || key === '7:1' ? 'k1' : undefined);
  const redis = accountRelay(rows, arrivals, faults, { deduplicates: false, orderingKeyOf });
  assert.equal(redis.accounting.messages, 9);
  assert.equal(redis.accounting.handlerRuns, 10, 'copies stored');
  assert.equal(redis.accounting.lost, 1);
  assert.equal(redis.accounting.stuck, 1);
  assert.equal(redis.accounting.dlqUnexpected, 1);
  assert.equal(redis.accounting.duplicates, 3, '2, 9 and 1 twice');
  assert.equal(redis.accounting.explained, 2, 'the copies near the fault, not the one 88 s after its first');
  assert.equal(redis.outOfOrder, 1);
  assert.equal(redis.altered, 1);
  assert.equal(redis.unknown, 1);
  const nats = accountRelay(rows, arrivals, faults, { deduplicates: true, orderingKeyOf });
  assert.equal(nats.accounting.duplicates, 3);
  assert.equal(nats.accounting.explained, 0, 'a broker that deduplicates must not store a resend: no fault explains it');
});

test("the runner's exit after SIGTERM: only its documented escalation is not a finding; its consumers' exits: only the harness's doing and clean ones", () => {
  const stopped = (drained: boolean): LogLine => ({ msg: 'runner stopped', drained });
  assert.deepEqual(stopOutcome({ code: 0, signal: null }, [stopped(true)]), { kind: 'drained' });
  assert.deepEqual(stopOutcome({ code: 1, signal: null }, [stopped(false)]), { kind: 'escalated' });
  // An error thrown in stop(): main() exits 1 too, but nothing logged `runner stopped`.
  assert.equal(stopOutcome({ code: 1, signal: null }, []).kind, 'failed');
  assert.equal(stopOutcome({ code: 1, signal: null }, [stopped(true)]).kind, 'failed');
  assert.equal(stopOutcome({ code: 2, signal: null }, [stopped(false)]).kind, 'failed');
  assert.equal(stopOutcome({ code: null, signal: 'SIGSEGV' }, [stopped(false)]).kind, 'failed');

  const at = (s: number): string => new Date(s * 1000).toISOString();
  const exited = (pid: number, s: number, code: number | null, signal: string | null): LogLine => ({
    msg: 'consumer process exited',
    pid,
    time: at(s),
    code,
    signal,
  });
  const logs: LogLine[] = [
    { msg: 'consumer running', pid: 1 },
    { msg: 'consumer running', pid: 2 },
    { msg: 'consumer running', pid: 3 },
    { msg: 'consumer running', pid: 4 },
    exited(1, 10, null, 'SIGKILL'), // the harness killed it
    exited(2, 11, 1, null), // crashed
    exited(3, 12, null, 'SIGKILL'), // nobody the harness killed
    { msg: 'consumer failed to start', pid: 5, err: BROKEN_HANDLER_ERROR },
    exited(5, 13, 1, null), // the harness's broken module
    { msg: 'consumer failed to start', pid: 6, err: 'Cannot find module' },
    exited(6, 14, 1, null), // a start that failed for another reason
    exited(7, 21, null, 'SIGTERM'), // stopped while still loading, after the harness's SIGTERM
    exited(11, 21, 1, null), // stopped while starting: its start failed on the stopping Outbox
    exited(4, 22, null, 'SIGTERM'), // running, its SIGTERM handler installed: it must drain, not die
    { msg: 'consumer process did not drain before its deadline; killing it', pid: 8 },
    exited(8, 25, null, 'SIGKILL'), // the runner's own escalation
    exited(9, 26, 0, null),
    exited(10, 31, null, 'SIGKILL'), // after the harness killed the group
  ];
  const { unexplained, escalations } = unexplainedConsumerExits(logs, {
    killedConsumers: new Set([1]),
    drainAskedAt: 15_000,
    stopAskedAt: 20_000,
    allKilledAt: 30_000,
  });
  assert.deepEqual(
    unexplained.map((text) => Number(/pid (\d+)/.exec(text)?.[1])),
    [2, 3, 6, 4],
  );
  assert.deepEqual(escalations, [8]);
  // A SIGHUP alone (a reload) stops no process that is starting: pids 7 and 11 too.
  const reloadOnly = { killedConsumers: new Set([1]), drainAskedAt: 15_000, stopAskedAt: undefined, allKilledAt: 30_000 };
  assert.equal(unexplainedConsumerExits(logs, reloadOnly).unexplained.length, 6);
  // Before any: the drain deadline's SIGKILL (pid 8) is nobody's either.
  assert.equal(unexplainedConsumerExits(logs, { ...reloadOnly, drainAskedAt: undefined }).unexplained.length, 7);
});

test("a scenario that is over is refused everything: the guarded objects' methods throw, their fields still read", () => {
  class Thing {
    readonly #calls: string[] = [];
    readonly label = 'a thing';
    call(what: string): number {
      this.#calls.push(what);
      return this.#calls.length;
    }
  }
  const abort = new AbortController();
  const guard = new ScenarioGuard(abort.signal);
  const thing = new Thing();
  const guarded = guard.wrap(thing, 'thing');
  assert.equal(guarded.call('one'), 1, 'its methods run on the object itself (private fields)');
  assert.equal(guard.unwrap(guarded), thing);
  abort.abort();
  assert.throws(() => guarded.call('two'), ScenarioOver);
  assert.throws(() => {
    guard.check('startWorker()');
  }, /startWorker\(\) refused: the scenario is over/);
  assert.equal(guarded.label, 'a thing');
  assert.equal(thing.call('three'), 2, "the harness's own object is not guarded");
});

async function echoServer(): Promise<{ port: number; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      received.push(chunk.toString());
      socket.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    port: address.port,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

async function open(port: number): Promise<{ socket: Socket; data: string[]; closed: () => boolean }> {
  const socket = connect(port, '127.0.0.1');
  const data: string[] = [];
  let closed = false;
  socket.on('data', (chunk) => data.push(chunk.toString()));
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  return { socket, data, closed: () => closed };
}

/** Round trips on a connection that works: the clock for "nothing arrived meanwhile". */
async function roundTrips(port: number, count: number): Promise<void> {
  const control = await open(port);
  for (let i = 0; i < count; i += 1) {
    control.socket.write(`ping${String(i)}`);
    await waitFor(() => control.data.join('').includes(`ping${String(i)}`), { what: 'a control round trip' });
  }
  control.socket.destroy();
}

test('the chaos TCP proxy: a freeze holds bytes without closing anything; a half-open drop discards them, new connections work', async () => {
  const echo = await echoServer();
  const proxy = await TcpProxy.start(echo.port);
  try {
    const a = await open(proxy.port);
    a.socket.write('hello');
    await waitFor(() => a.data.join('') === 'hello', { what: 'forwarding' });

    proxy.freeze();
    a.socket.write('frozen');
    await roundTrips(echo.port, 3); // directly to the server, not through the frozen proxy
    assert.ok(!echo.received.includes('frozen'), 'nothing forwarded while frozen');
    assert.equal(a.closed(), false, 'the connection stays open');
    proxy.thaw();
    await waitFor(() => a.data.join('') === 'hellofrozen', { what: 'the held bytes, in order, after the thaw' });

    proxy.dropHalfOpen();
    a.socket.write('lost');
    const b = await open(proxy.port);
    b.socket.write('new');
    await waitFor(() => b.data.join('') === 'new', { what: 'a new connection forwards' });
    await roundTrips(proxy.port, 3);
    assert.equal(a.data.join(''), 'hellofrozen', 'the dropped connection hears nothing more');
    assert.ok(!echo.received.includes('lost'), 'and what it sends goes nowhere');
    assert.equal(a.closed(), false, 'without a FIN or RST');
    a.socket.destroy();
    b.socket.destroy();
  } finally {
    await proxy.close();
    await echo.close();
  }
});
