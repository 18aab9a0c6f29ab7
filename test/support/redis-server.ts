/**
 * A real redis-server (Debian's package, installed by scripts/ensure-redis.sh) for the Redis Streams
 * sink's tests: its own free port on 127.0.0.1, its append-only file in a temp dir, so a restart
 * (clean or a SIGKILL) keeps every entry Redis acknowledged.
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

export async function startRedisServer(): Promise<RedisServer | { skip: string }> {
  ensured ??= ensureServerBinary(SCRIPT, 'redis-server');
  const binary = await ensured;
  if ('skip' in binary) return binary;
  const server = await ServerProcess.start({
    name: 'redis-server',
    binary: binary.path,
    // No RDB snapshots (--save ''), an append-only file instead: every acknowledged write is in the
    // file (fsync once a second; the write itself happens before the reply), so a SIGKILL of the
    // process loses nothing that was confirmed. No config file: nothing from /etc/redis applies.
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
      '--daemonize',
      'no',
      '--logfile',
      '',
    ],
    ready: /Ready to accept connections/,
  });
  return Object.assign(server, { url: `redis://127.0.0.1:${server.port}` });
}
