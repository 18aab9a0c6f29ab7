/**
 * A real redis-server (Debian's package, installed by scripts/ensure-redis.sh) for the Redis Streams
 * sink's tests: its own free port on 127.0.0.1, its append-only file in a temp dir, so a restart
 * (clean or a SIGKILL) keeps every entry Redis acknowledged — with `appendfsync always`, the
 * default here (see below).
 *
 *   const started = await startRedisServer();
 *   if ('skip' in started) return t.skip(started.skip);
 *   t.after(() => started.close());
 */
import { fileURLToPath } from 'node:url';

import { ensureServerBinary, ServerProcess } from './server-process.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-redis.sh', import.meta.url));

let ensured: Promise<{ path: string } | { skip: string }> | undefined;

export interface RedisServer extends ServerProcess {
  readonly url: string;
}

/**
 * `always`: Redis writes and fsyncs the append-only file before it replies, so nothing it
 * acknowledged is lost to a SIGKILL. `everysec` (Redis's own default, what the benchmark measures):
 * while a background fsync is slow, Redis postpones the write by up to 2 s and replies meanwhile,
 * so a SIGKILL then loses entries it acknowledged. CI saw it: 36 confirmed XADDs missing after a
 * restart in the chaos suite's relay-redis-kill, on a disk busy with PostgreSQL's fsyncs.
 */
export type AppendFsync = 'always' | 'everysec';

export async function startRedisServer(
  options: { readonly appendfsync?: AppendFsync } = {},
): Promise<RedisServer | { skip: string }> {
  ensured ??= ensureServerBinary(SCRIPT, 'redis-server');
  const binary = await ensured;
  if ('skip' in binary) return binary;
  const server = await ServerProcess.start({
    name: 'redis-server',
    binary: binary.path,
    // No RDB snapshots (--save ''), an append-only file instead (AppendFsync above says when an
    // acknowledged write is in it). No config file: nothing from /etc/redis applies.
    args: (port, dataDir) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dataDir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      options.appendfsync ?? 'always',
      '--daemonize',
      'no',
      '--logfile',
      '',
    ],
    ready: /Ready to accept connections/,
  });
  return Object.assign(server, { url: `redis://127.0.0.1:${server.port}` });
}
