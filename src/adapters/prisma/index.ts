/**
 * `txoutbox/prisma`: publish through the interactive transaction of Prisma 7
 * (`prisma.$transaction(async (tx) => …)`), on any driver adapter (`@prisma/adapter-pg`, …).
 *
 * No runtime or type import of Prisma (an optional peer): the handle is described structurally.
 * Wake-up: in the transaction. Prisma exposes neither the driver's connection under `tx` nor an
 * after-commit hook (the `$transaction` promise resolving is the only signal, and it belongs to
 * the caller), so the NOTIFY rides in the insert (architecture/data-layers.md#prisma).
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';

/** The slice of Prisma's interactive-transaction client used here (`tx` of `$transaction(async (tx) => …)`). */
export interface PrismaTransactionClient {
  $queryRawUnsafe(query: string, ...values: unknown[]): PromiseLike<unknown>;
}

const FIX = 'pass the `tx` of prisma.$transaction(async (tx) => { …; await outbox.publish(fromPrisma(tx), …) })';

function describe(handle: unknown): string {
  if (handle === null) return 'null';
  if (typeof handle !== 'object' && typeof handle !== 'function') return typeof handle;
  return isRootClient(handle)
    ? 'the root PrismaClient (each raw query on it is its own transaction)'
    : 'an object without $queryRawUnsafe';
}

/**
 * The root client (extended or not) has `$connect`; the interactive-transaction client never does:
 * Prisma builds it from the root client minus its deny list (`$connect`, `$disconnect`, `$on`,
 * `$use`, `$extends`), in every major since interactive transactions exist. `$transaction` is not
 * a tell: in 7.10 the transaction client has one too (a nested transaction, on a savepoint).
 */
function isRootClient(handle: object): boolean {
  return typeof (handle as { $connect?: unknown }).$connect === 'function';
}

/**
 * Wraps Prisma's interactive-transaction client. The root client is refused: a raw query on it
 * autocommits, so the outbox row would commit without the caller's data. A batch
 * `$transaction([…])` hands the caller no client, so it has nothing to wrap. A nested
 * `tx.$transaction(async (inner) => …)` (a savepoint) is accepted: the NOTIFY rides in the
 * statement, so rolling the savepoint back discards it with the row.
 */
export function fromPrisma(tx: PrismaTransactionClient): TransactionAdapter {
  const handle: unknown = tx;
  if (
    handle === null ||
    typeof handle !== 'object' ||
    typeof (handle as { $queryRawUnsafe?: unknown }).$queryRawUnsafe !== 'function' ||
    isRootClient(handle)
  ) {
    throw new NotInTransactionError(
      `fromPrisma() needs Prisma's interactive-transaction client, got ${describe(handle)}. Fix: ${FIX}.`,
    );
  }
  return {
    txoutboxAdapter: 'prisma',
    query: async (text, values) => {
      // $queryRawUnsafe resolves to the rows as objects (bigint → BigInt, bytea → Uint8Array, …);
      // txoutbox's statements return only text, numbers and booleans (src/producer/sql.ts).
      const rows = await tx.$queryRawUnsafe(text, ...values);
      return rows as readonly Record<string, unknown>[];
    },
  };
}
