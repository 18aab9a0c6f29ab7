import { fork } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { EmbeddedPostgresError } from '../errors.js';

const KEEPER = fileURLToPath(new URL(`./database-keeper${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export interface KeptDatabase {
  readonly connectionString: string;
  readonly port: number;
  /** Stops the server and waits for its keeper to exit. */
  stop(): Promise<void>;
}

type KeeperMessage =
  | { readonly type: 'ready'; readonly connectionString: string; readonly port: number }
  | { readonly type: 'failed'; readonly message: string };

/** Starts an embedded PostgreSQL outside our process group (see database-keeper.ts for why). */
export function keepDatabase(): Promise<KeptDatabase> {
  const keeper = fork(KEEPER, [], { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv });
  const exited = new Promise<void>((resolve) =>
    keeper.once('exit', () => {
      resolve();
    }),
  );
  return new Promise((resolve, reject) => {
    keeper.once('exit', (code) => {
      reject(new EmbeddedPostgresError(`the embedded PostgreSQL keeper exited (code ${code}) before the server was ready`));
    });
    keeper.once('message', (message: KeeperMessage) => {
      if (message.type === 'failed') {
        reject(new EmbeddedPostgresError(message.message));
        return;
      }
      resolve({
        connectionString: message.connectionString,
        port: message.port,
        stop: async () => {
          if (keeper.connected) keeper.send({ type: 'stop' });
          await exited;
        },
      });
    });
  });
}
