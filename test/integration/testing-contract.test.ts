import assert from 'node:assert/strict';
import { test } from 'node:test';

import { memoryDriver } from '../contract/memory-driver.js';
import { postgresDriver } from '../contract/postgres-driver.js';
import { SCENARIOS } from '../contract/scenarios.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * The contract suite of txoutbox/testing (architecture/testing.md): every scenario runs against the
 * in-memory outbox and the real one on PostgreSQL; what they observe must be equal, and what each
 * scenario pins. A behaviour of the in-memory outbox that drifts from the real one fails here.
 */
for (const scenario of SCENARIOS) {
  test(scenario.name, async () => {
    const postgres = await scenario.run(postgresDriver(newOutbox, db.pool));
    const memory = await scenario.run(memoryDriver);
    assert.deepEqual(memory, postgres, 'the in-memory outbox observed what PostgreSQL did');
    scenario.check(postgres as never);
  });
}
