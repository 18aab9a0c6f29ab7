/**
 * The PostgreSQL the bench runs against: an embedded server started here with the settings it
 * ships with (fsync on; pg_stat_statements preloaded), or DATABASE_URL's server (it must allow
 * CREATE DATABASE; pg_stat_statements is used when installable). Every measured run gets a fresh
 * database, dropped afterwards, so runs never see each other's rows, statistics or bloat.
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../src/embedded/index.js';

export interface BenchServer {
  readonly admin: pg.Pool;
  readonly embedded: boolean;
  readonly statStatements: boolean;
  readonly version: string;
  readonly settings: Readonly<Record<string, string>>;
  /** Creates a fresh database; returns its connection string. */
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/**
 * `commitDelayUs` (embedded only) sets `commit_delay` with `commit_siblings = 0`: every commit
 * waits that long before its WAL flush, as a commit does on storage whose flush costs that much
 * (network disks: about a millisecond). Commits that share a flush (group commit) share the wait;
 * commits serialised by NOTIFY's lock each pay it.
 */
export async function startServer(databaseUrl: string | undefined, commitDelayUs?: number): Promise<BenchServer> {
  let url = databaseUrl;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (url === undefined || url === '') {
    const server = await startEmbeddedPostgres(
      commitDelayUs === undefined ? {} : { settings: { commit_delay: String(commitDelayUs), commit_siblings: '0' } },
    );
    url = server.connectionString;
    stopEmbedded = () => server.stop();
  }
  const adminUrl = url;
  const admin = new pg.Pool({ connectionString: adminUrl, max: 3 });
  admin.on('error', () => undefined);
  let statStatements = true;
  try {
    await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await admin.query('SELECT count(*) FROM pg_stat_statements');
  } catch {
    statStatements = false;
  }
  const version = (await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]?.v ?? '?';
  const { rows } = await admin.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level',
       'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'wal_sync_method', 'shared_preload_libraries', 'max_connections',
       'commit_delay', 'commit_siblings')`,
  );
  return {
    admin,
    embedded: stopEmbedded !== undefined,
    statStatements,
    version,
    settings: Object.fromEntries(rows.map((row) => [row.name, row.setting])),
    async createDatabase(name) {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.query(`CREATE DATABASE "${name}"`);
      return withDatabase(adminUrl, name);
    },
    async dropDatabase(name) {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
    async stop() {
      await admin.end();
      await stopEmbedded?.();
    },
  };
}
