/**
 * The handler every scenario runs: a link of a chain. It records its run in `chaos_handled` and
 * publishes the chain's next link, both in one transaction of its own (the consume-then-publish
 * pattern an outbox exists for), so a link that is lost anywhere shows as a chain that stops.
 * Under a transactional subscription that transaction is the delivery's (`ctx.client`), which
 * commits them with the ack: the accounting then holds its runs to effects once.
 * Every 40th root is poison: its handler rejects it, and the accounting expects exactly that row
 * in the DLQ as `rejected`.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type pg from 'pg';

import type { HandlerContext, Message } from '../../src/index.js';
import { INSERT_FAILURE, INSERT_HANDLED, INSERT_PUBLISHED } from '../lib/ledger-sql.js';

export interface ChainBody {
  /** `<chain>:<step>`: the same for every copy of one link. */
  readonly key: string;
  readonly chain: number;
  readonly step: number;
  readonly length: number;
  readonly poison: boolean;
  /** Keeps rows a realistic size. */
  readonly pad: string;
}

export const PAD = 'x'.repeat(100);
export const POISON_EVERY = 40;

export function rootBody(chain: number, length: number): ChainBody {
  return { key: `${chain}:1`, chain, step: 1, length, poison: chain % POISON_EVERY === 0, pad: PAD };
}

/** What the handler publishes with: an Outbox of the product under test (only its publish). */
export interface Publisher {
  publish(executor: unknown, queue: string, body: unknown): Promise<string | null>;
}

export interface ChainDeps {
  /** The application's own pool: its transaction carries the record and the follow-up. */
  readonly pool: pg.Pool;
  readonly publisher: Publisher;
  /** Work before the transaction: how long the handler takes. */
  readonly delayMs: number;
  /** A transactional subscription's handler: it writes in ctx.client's transaction, which txoutbox commits with the ack. */
  readonly transactional?: boolean;
  /**
   * The delay is a statement instead (`pg_sleep` in the handler's transaction, on ctx.client or the
   * application's connection): a fault that drops connections then meets a statement in flight.
   */
  readonly sleepOnServer?: boolean;
}

/**
 * node-postgres emits 'error' on a checked-out client whose connection dies between queries (a
 * terminated backend), and an unheard 'error' kills the process. The next query fails anyway; the
 * listener only keeps the process alive. Attached in the pool's 'connect' event, once per client,
 * before the pool hands it out: a listener added after `await pool.connect()` came too late when
 * the backend was terminated as it started (its FATAL in the same read as the ReadyForQuery that
 * completed the connect; terminate-backends crashed a worker that way, 1 run in 4). Also hears the
 * pool's own errors (idle clients).
 */
export function hearClientErrors<P extends pg.Pool>(pool: P): P {
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  return pool;
}

function describe(error: unknown): { name: string; message: string } {
  if (error instanceof Error) return { name: error.constructor.name, message: error.message };
  return { name: typeof error, message: String(error) };
}

export function chainHandler(deps: ChainDeps) {
  return async function chain(message: Message, ctx: HandlerContext): Promise<void> {
    const startedAt = Date.now();
    const body = message.body as ChainBody;
    if (body.poison) {
      ctx.reject('poison: meant to fail');
      return;
    }
    const onServer = deps.sleepOnServer === true && deps.delayMs > 0;
    if (deps.delayMs > 0 && !onServer) await sleep(deps.delayMs);
    if (deps.transactional === true) {
      try {
        if (onServer) await sleepOn(ctx.client, deps.delayMs);
        await recordLink(ctx.client, deps.publisher, message, startedAt, true);
      } catch (error) {
        // Thrown at once, as a handler that lets ctx.client's error propagate does: the record is
        // written meanwhile (awaited first, it let the connection's close land before the throw
        // and hid the failure's classification from every fault). failureRecordsWritten() waits for it.
        const record = recordFailure(deps.pool, message, error, new Date());
        pendingRecords.add(record);
        void record.finally(() => pendingRecords.delete(record));
        throw error;
      }
      return;
    }
    let client: pg.PoolClient | undefined;
    try {
      client = await deps.pool.connect();
      await client.query('BEGIN');
      if (onServer) await sleepOn(client, deps.delayMs);
      await recordLink(client, deps.publisher, message, startedAt, false);
      await client.query('COMMIT');
      client.release();
    } catch (error) {
      if (client !== undefined) {
        await client.query('ROLLBACK').catch(() => undefined);
        // A connection that failed mid-transaction is not reused.
        client.release(error instanceof Error ? error : new Error(String(error)));
      }
      await recordFailure(deps.pool, message, error);
      throw error;
    }
  };
}

async function sleepOn(client: pg.ClientBase, ms: number): Promise<void> {
  await client.query('SELECT pg_sleep($1::float8)', [ms / 1000]);
}

/** The run's ledger row and the chain's next link (with its ledger row), in `client`'s open transaction. */
async function recordLink(
  client: pg.ClientBase,
  publisher: Publisher,
  message: Message,
  startedAt: number,
  transactional: boolean,
): Promise<void> {
  const body = message.body as ChainBody;
  await client.query(INSERT_HANDLED, [message.id, body.key, process.pid, message.deliveriesCount, startedAt, transactional]);
  if (body.step < body.length) {
    const next: ChainBody = { ...body, key: `${String(body.chain)}:${String(body.step + 1)}`, step: body.step + 1 };
    const id = await publisher.publish(client, message.queue, next);
    await client.query(INSERT_PUBLISHED, [id, next.key, message.id, false]);
  }
}

/** Failure records still being written (a transactional run's, which its handler does not await). */
const pendingRecords = new Set<Promise<void>>();

/** Resolves once every failure record started so far was written or failed, or after `ms`. */
export async function failureRecordsWritten(ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(pendingRecords),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * A failed run, written on its own (best effort: during an outage the write fails too; never
 * rejects). `at`: when the run failed (by default the write's time, for a write awaited at once).
 */
async function recordFailure(pool: pg.Pool, message: Message, error: unknown, at?: Date): Promise<void> {
  const { name, message: text } = describe(error);
  const { key } = message.body as ChainBody;
  await pool.query(INSERT_FAILURE, [message.id, key, process.pid, name, text, at ?? null]).catch(() => undefined);
}
