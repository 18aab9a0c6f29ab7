/**
 * Names the connection behind an 'error' event nobody listens to, which kills the worker: the last
 * statement that client ran is logged just before. CI saw terminate-backends crash a worker that
 * way: a 57P01 on a client with no query active and no listener, "after no statement". A connect
 * stack recorded here (a throwaway probe) named the harness's own handler pool: its backend was
 * terminated as it started, before the listener added after `await pool.connect()`; the pools
 * now hear errors from their 'connect' event (handlers/chain.ts hearClientErrors).
 */
import type pg from 'pg';

const lastStatement = new WeakMap<object, string>();

export function traceUnheardClientErrors(Client: typeof pg.Client): void {
  const proto = Client.prototype as unknown as {
    query: (...args: unknown[]) => unknown;
    emit: (event: string | symbol, ...args: unknown[]) => boolean;
    listenerCount: (event: string) => number;
  };
  const query = proto.query;
  proto.query = function (this: object, ...args: unknown[]): unknown {
    const config = args[0] as { text?: unknown; name?: unknown } | string | undefined;
    const text = typeof config === 'string' ? config : (config?.name ?? config?.text);
    lastStatement.set(this, String(text).slice(0, 120));
    return query.apply(this, args);
  };
  const emit = proto.emit;
  proto.emit = function (this: typeof proto, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) {
      const err = args[0] instanceof Error ? args[0].message : String(args[0]);
      // Plain text starting `error:`: the line the harness reports as the crash (crashLine).
      process.stderr.write(`error: unheard pg client error "${err}" after ${lastStatement.get(this) ?? 'no statement'}\n`);
    }
    return emit.call(this, event, ...args);
  };
}
