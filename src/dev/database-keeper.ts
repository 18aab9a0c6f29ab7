/**
 * The embedded PostgreSQL of `txoutbox dev`, in a process of its own group. A terminal's Ctrl-C
 * signals the whole foreground group: had the server been our child there, it would shut down at
 * once, under consumers still draining. Here it stops only when asked (`stop`), or when the
 * demo's channel closes (the demo died: nothing is left behind).
 *
 * Protocol: parent → `{ type: 'stop' }`; keeper → `{ type: 'ready', connectionString, port }` or
 * `{ type: 'failed', message }`.
 */
import { startEmbeddedPostgres } from '../embedded/index.js';
import { errorMessage } from '../errors.js';

const server = await startEmbeddedPostgres().catch((error: unknown) => {
  process.send?.({ type: 'failed', message: errorMessage(error) });
  process.exit(1);
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.stop();
  process.exit(0);
}

process.on('disconnect', () => void stop());
process.on('message', (message) => {
  if ((message as { type?: unknown }).type === 'stop') void stop();
});
process.send?.({ type: 'ready', connectionString: server.connectionString, port: server.port });
