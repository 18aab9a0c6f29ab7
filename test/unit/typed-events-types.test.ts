import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));

test('type tests: wrong queue names and body shapes do not compile (test/types/*.types.ts)', async () => {
  // Every `@ts-expect-error` there marks a line that must fail; one that compiled would be reported
  // as an unused directive, and tsc would exit non-zero with the file and line.
  const result = await promisify(execFile)(process.execPath, [tsc, '-p', 'test/types/tsconfig.json', '--noEmit'], {
    cwd: root,
  }).then(
    () => ({ code: 0, output: '' }),
    (error: unknown) => {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
    },
  );
  assert.equal(result.code, 0, result.output);
});
