/**
 * A real nats-server with JetStream (Debian's package, installed by scripts/ensure-nats.sh) for the
 * NATS sink's tests: its own free port on 127.0.0.1, its JetStream store in a temp dir that a
 * restart keeps.
 *
 *   const started = await startNatsServer();
 *   if ('skip' in started) return t.skip(started.skip);
 *   t.after(() => started.close());
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ensureServerBinary, ServerProcess } from './server-process.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-nats.sh', import.meta.url));

let ensured: Promise<{ path: string } | { skip: string }> | undefined;

export interface NatsServer extends ServerProcess {
  readonly url: string;
}

/**
 * `jetstream: false` starts a plain server (no -js): the case of a subject nobody stores. `config` is
 * a nats-server config file's text (accounts, users...), written into the server's data dir; the
 * command-line flags (address, port, JetStream store) override what it says about those.
 */
export async function startNatsServer(
  options: { jetstream?: boolean; config?: string } = {},
): Promise<NatsServer | { skip: string }> {
  ensured ??= ensureServerBinary(SCRIPT, 'nats-server');
  const binary = await ensured;
  if ('skip' in binary) return binary;
  const jetstream = options.jetstream ?? true;
  const server = await ServerProcess.start({
    name: 'nats-server',
    binary: binary.path,
    args: (port, dataDir) => {
      const config: string[] = [];
      if (options.config !== undefined) {
        const file = join(dataDir, 'nats-server.conf');
        writeFileSync(file, options.config);
        config.push('-c', file);
      }
      return [...config, '-a', '127.0.0.1', '-p', String(port), ...(jetstream ? ['-js', '-sd', dataDir] : [])];
    },
    ready: /Server is ready/,
  });
  return Object.assign(server, { url: `nats://127.0.0.1:${server.port}` });
}
