/**
 * Every data-layer example (examples/data-layers/<library>.ts) runs against a real database, and
 * the README's section for that library shows it unchanged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { useTestDatabase } from '../support/database.js';

const run = promisify(execFile);

/** The first ```ts block under README's `### <heading>`. */
async function readmeExample(heading: string): Promise<string | undefined> {
  const readme = await readFile('README.md', 'utf8');
  const start = readme.indexOf(`\n### ${heading}\n`);
  if (start === -1) return undefined;
  return /```ts\n([\s\S]*?)```/.exec(readme.slice(start))?.[1];
}

interface ExampleCase {
  /** README heading (`### …`) under Data layers. */
  readonly heading: string;
  /** examples/data-layers/<file>. */
  readonly file: string;
  /** What its output must show: the event it published, read back through fetchUnprocessed. */
  readonly prints: readonly RegExp[];
}

const ORDER_EVENT = [/queue: 'order\.created'/, /body: \{ orderId: 1, total: 42 \}/];

const CASES: readonly ExampleCase[] = [
  { heading: 'Kysely', file: 'kysely.ts', prints: ORDER_EVENT },
  { heading: 'MikroORM', file: 'mikro-orm.ts', prints: ORDER_EVENT },
  { heading: 'postgres.js', file: 'postgres-js.ts', prints: ORDER_EVENT },
  { heading: 'Drizzle', file: 'drizzle.ts', prints: ORDER_EVENT },
  { heading: 'Knex', file: 'knex.ts', prints: ORDER_EVENT },
  { heading: 'Sequelize', file: 'sequelize.ts', prints: ORDER_EVENT },
];

for (const example of CASES) {
  describe(`examples/data-layers/${example.file}`, () => {
    // A database per example: they all create `orders` and print its first order.
    const db = useTestDatabase(import.meta.url);

    test(`the README's "${example.heading}" section shows it unchanged`, async () => {
      assert.equal(await readmeExample(example.heading), await readFile(`examples/data-layers/${example.file}`, 'utf8'));
    });

    test('runs against a real database and prints its event', async () => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/data-layers/${example.file}`], {
        env: { ...process.env, DATABASE_URL: db.url },
        timeout: 60_000,
      });
      for (const pattern of example.prints) assert.match(stdout, pattern);
    });
  });
}
