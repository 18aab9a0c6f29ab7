import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { after, before } from 'node:test';

import pg from 'pg';

import { quoteIdent } from '../../src/schema/identifiers.js';

/**
 * The server for this run: `npm test` sets DATABASE_URL (an embedded server it started, or the
 * caller's). Running a test file directly without it is a setup mistake, reported with the fix.
 */
export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (url === undefined || url === '') {
    throw new Error(
      'DATABASE_URL is not set. Run the tests through `npm test` (it starts an embedded PostgreSQL), or set DATABASE_URL to a server where this user may CREATE DATABASE.',
    );
  }
  return url;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export interface TestDatabase {
  /** Connection string of this file's own database. */
  readonly url: string;
  /** A pool on this file's database, closed after the file's tests. */
  readonly pool: pg.Pool;
  /** Runs `fn` after the file's tests, before the pool closes; last registered runs first. */
  onCleanup(fn: () => Promise<void>): void;
}

/**
 * Gives the calling test file a fresh database of its own (so files run in parallel without
 * sharing state). It is dropped after the file's tests only when they all passed, so a failure can
 * be inspected; an embedded server is deleted with the run anyway.
 */
export function useTestDatabase(importMetaUrl: string): TestDatabase {
  const file = basename(new URL(importMetaUrl).pathname)
    .replace(/\.test\.ts$/, '')
    .replace(/[^a-z0-9]+/gi, '_')
    .toLowerCase();
  const name = `t_${file.slice(0, 40)}_${randomBytes(4).toString('hex')}`;
  const admin = serverUrl();
  const url = withDatabase(admin, name);
  let pool: pg.Pool | undefined;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
    } finally {
      await client.end();
    }
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await pool?.end();
    if (process.exitCode !== undefined && process.exitCode !== 0) return;
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    } finally {
      await client.end();
    }
  });

  return {
    url,
    get pool(): pg.Pool {
      if (pool === undefined) {
        pool = new pg.Pool({ connectionString: url, max: 20 });
        // An idle connection ended by the server (a test's pg_terminate_backend, the drop at the
        // end) is discarded by the pool; unheard, its 'error' would crash the whole test file.
        pool.on('error', () => undefined);
      }
      return pool;
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
  };
}
