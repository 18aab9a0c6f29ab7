/**
 * exchange() (src/relay/sinks/webhook-request.ts) when node:http refuses the request before it
 * exists. The sink never passes such headers (webhookHeaders percent-encodes values HTTP cannot
 * carry), so a CR LF in a value is called here directly: it is a real synchronous throw of
 * http.request (ERR_INVALID_CHAR), not a mock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { exchange, RequestFailure, WebhookAgents } from '../../src/relay/sinks/webhook-request.js';

test('a request node:http refuses to build rejects the send, and no timer is left to fire', async () => {
  const agents = new WebhookAgents(1);
  const timeoutMs = 20;
  await assert.rejects(
    exchange({
      agents,
      url: new URL('http://127.0.0.1:9/hook'),
      method: 'POST',
      headers: { 'x-bad': 'a\r\nb' },
      body: Buffer.from('{}'),
      timeoutMs,
      signal: new AbortController().signal,
    }),
    (error: Error) => {
      assert.ok(error instanceof RequestFailure, `${error.name}: ${error.message}`);
      assert.equal(error.kind, 'invalid');
      assert.match(error.message, /could not be made/);
      return true;
    },
  );
  // Not a wait for a state: a timer of the same delay armed later fires after exchange()'s own
  // timer, had it armed one. Before the fix that timer threw a ReferenceError (stopListening was not
  // initialised yet), an uncaught exception that fails this test.
  await new Promise((resolve) => setTimeout(resolve, timeoutMs));
  agents.destroy();
});
