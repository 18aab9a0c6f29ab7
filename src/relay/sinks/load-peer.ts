import { MissingPeerDependencyError } from '../../errors.js';

/**
 * Loads a sink's client library, an optional peer dependency, on the sink's first connect: importing
 * `txoutbox/relay` must never need a client that the application does not use.
 *
 * The specifier is a parameter, never a literal: in the CommonJS build (tsconfig.cjs.json) `import()`
 * becomes `require()`, which loads the CommonJS clients (nats 2.x, ioredis) as it should, and the
 * tests can point it at a module that does not exist. Only "this very package is not installed"
 * becomes MissingPeerDependencyError; a client that is installed but fails while loading (a broken
 * dependency of its own) keeps its own error, which names the real problem.
 */
export async function loadPeer<T = unknown>(specifier: string, neededBy: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    if (isNotFound(error, specifier)) throw new MissingPeerDependencyError(specifier, neededBy, error);
    throw error;
  }
}

function isNotFound(error: unknown, specifier: string): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  // Node names the missing package in the message ("Cannot find package 'nats' imported from …",
  // "Cannot find module 'nats'"): a missing dependency *of* the client names another one.
  return error.message.includes(`'${specifier}'`);
}
