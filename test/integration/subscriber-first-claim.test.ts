import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { useTestDatabase } from '../support/database.js';
import { messageText } from '../support/message-text.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('start(): the first claim and the start diagnostics', () => {
  for (const lease of ['token', 'row-lock'] as const) {
    test(`${lease}: the first claim runs on the connection migrate() left idle in the pool; the diagnostics queue behind it`, async () => {
      // A connection to a new backend costs a handshake and a fresh catalog cache (~25–40 ms on
      // the bench's machine): the diagnostics (catalog reads, off the claim path) can wait for one.
      const pool = new pg.Pool({ connectionString: db.url, max: 4 });
      const opened = new Set<pg.Client>();
      pool.on('connect', (client) => opened.add(client));
      const outbox = newOutbox({ pool, table: `first_claim_${lease.replace('-', '_')}` });
      try {
        await outbox.migrate();
        assert.ok(pool.idleCount >= 1, 'migrate() leaves its connection idle in the pool');
        const before = new Set(opened);
        const texts: string[] = [];
        pool.on('acquire', (client) => {
          if (!before.has(client) || texts.length > 0) return;
          // The first statements the first caller to get an idle connection sends on it.
          const query = client.query.bind(client) as (...args: unknown[]) => unknown;
          Object.assign(client, {
            query: (...args: unknown[]) => {
              texts.push(messageText(args[0]));
              return query(...args);
            },
          });
        });
        outbox.subscribe('first', () => undefined, { lease, ...FAST_POLL });
        outbox.start();
        await waitFor(() => texts.length > 0, { what: 'a statement on the idle connection' });
        // Token: the claim itself. Row-lock: the batch's BEGIN, which the claim follows in the same message.
        const first = texts[0] ?? '';
        assert.ok(
          lease === 'token' ? first.includes('SKIP LOCKED') : first.startsWith('BEGIN'),
          `the first statement on the idle connection is the subscription's first claim: ${first.slice(0, 100)}`,
        );
      } finally {
        await outbox.stop();
        await pool.end();
      }
    });
  }
});
