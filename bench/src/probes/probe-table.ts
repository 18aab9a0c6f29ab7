import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import type { SchemaNames } from '../../../src/schema/schema-names.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';

/** The probes' table: an embedded server with `probe.outbox` migrated, a pool and one client of its own. */
export interface ProbeTable {
  readonly pool: pg.Pool;
  /** Connected; the probe's statements run here, one at a time. */
  readonly client: pg.Client;
  readonly names: SchemaNames;
  /** Ends the client and the pool, then stops the server. */
  close(): Promise<void>;
}

/** Starts an embedded server and migrates `probe.outbox` on it (the Outbox that did is stopped). */
export async function startProbeTable(poolSize = 2): Promise<ProbeTable> {
  const server = await startEmbeddedPostgres();
  const pool = new pg.Pool({ connectionString: server.connectionString, max: poolSize });
  const client = new pg.Client({ connectionString: server.connectionString });
  const close = async () => {
    await client.end().catch(() => undefined);
    await pool.end();
    await server.stop();
  };
  try {
    const outbox = new Outbox({ pool, table: 'probe.outbox' });
    await outbox.migrate();
    await outbox.stop();
    await client.connect();
  } catch (error) {
    await close();
    throw error;
  }
  return { pool, client, names: resolveSchemaNames('probe.outbox', undefined), close };
}
