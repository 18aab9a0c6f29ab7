/**
 * What a publish probe opens on one embedded server of its own: an admin pool, the producers'
 * clients and the Outboxes it builds (each probe pushes its own), all closed by close(), in that
 * order, whatever the probe did.
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';

export interface ProbeResources {
  readonly server: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
  readonly admin: pg.Pool;
  readonly clients: pg.Client[];
  readonly outboxes: { stop(): Promise<void> }[];
  readonly close: () => Promise<void>;
}

export async function probeResources(): Promise<ProbeResources> {
  const server = await startEmbeddedPostgres();
  const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
  admin.on('error', () => undefined);
  const clients: pg.Client[] = [];
  const outboxes: { stop(): Promise<void> }[] = [];
  return {
    server,
    admin,
    clients,
    outboxes,
    close: async () => {
      for (const client of clients) await client.end();
      for (const outbox of outboxes) await outbox.stop();
      await admin.end();
      await server.stop();
    },
  };
}
