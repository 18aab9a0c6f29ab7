/**
 * Every data-layer example (examples/data-layers/<library>.ts) runs against a real database, and
 * the README's section for that library shows it unchanged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { useTestDatabase } from '../support/database.js';
import { prismaGenerate } from './prisma/generate-client.js';

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
  /** Runs before the example (the Prisma example's client is generated here, not committed). */
  readonly prepare?: () => Promise<void>;
}

const ORDER_EVENT = [/queue: 'order\.created'/, /body: \{ orderId: 1, total: 42 \}/];

/**
 * Generates the Prisma example's client (examples/data-layers/generated/, gitignored), then
 * type-checks the example against it: the project's tsconfig and eslint leave it out, since a
 * fresh clone has no generated client to check it against.
 */
async function preparePrismaExample(): Promise<void> {
  await prismaGenerate('examples/data-layers/schema.prisma');
  await mkdir('.tmp', { recursive: true });
  const tsconfig = '.tmp/tsconfig.prisma-example.json';
  await writeFile(
    tsconfig,
    JSON.stringify({ extends: '../tsconfig.json', include: [], files: ['../examples/data-layers/prisma.ts'] }),
  );
  await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', tsconfig, '--noEmit'], { timeout: 120_000 });
}

const CASES: readonly ExampleCase[] = [
  { heading: 'Prisma', file: 'prisma.ts', prints: ORDER_EVENT, prepare: preparePrismaExample },
  { heading: 'TypeORM', file: 'typeorm.ts', prints: ORDER_EVENT },
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
      await example.prepare?.();
      const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/data-layers/${example.file}`], {
        env: { ...process.env, DATABASE_URL: db.url },
        timeout: 60_000,
      });
      for (const pattern of example.prints) assert.match(stdout, pattern);
    });
  });
}
