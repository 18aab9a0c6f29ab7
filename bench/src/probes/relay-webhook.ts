/**
 * Relay to an HTTP webhook (issue 16; architecture/relay.md "Webhook sink"): a real node:http
 * receiver on 127.0.0.1 in a child process of its own (so it does not share the relay's event loop),
 * its rate for signed POSTs from a keep-alive node:http agent alone (the limit), outbox.relay()
 * through webhookSink() draining pre-inserted rows, and commit-to-receiver latency at 200 msg/s.
 *
 *   npm run bench:relay-webhook -- [rows, default 20000] [rounds, default 3]
 *
 * Prints a markdown table on stdout (progress on stderr).
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { Agent, request } from 'node:http';

import { webhookSink } from '../../../src/relay/index.js';
import { runRelayProbe } from '../relay-probe.js';

const rows = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
const SECRET = 'probe-secret';

/** The receiver: answers 200 to every POST and tells the parent each correlation id it got. */
const RECEIVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(200).end();
    if (process.connected) process.send({ correlationId: req.headers['correlation-id'] ?? '' });
  });
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const port = await new Promise<number>((resolve) => {
  child.once('message', (message) => {
    resolve((message as { port: number }).port);
  });
});
let onCorrelation: ((id: string) => void) | undefined;
child.on('message', (message) => {
  const id = (message as { correlationId?: string }).correlationId;
  if (id !== undefined) onCorrelation?.(id);
});
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function post(path: string, body: Buffer, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = Math.floor(Date.now() / 1000);
    const signature = createHmac('sha256', SECRET)
      .update(`${String(t)}.`)
      .update(body)
      .digest('hex');
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': body.length, 'x-txoutbox-signature': `t=${String(t)},v1=${signature}` },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) < 300) resolve();
          else reject(new Error(`status ${String(res.statusCode)}`));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

try {
  const table = await runRelayProbe(
    {
      name: `HTTP webhook (a node:http receiver in its own process, signed POSTs, keep-alive)`,
      sink: (queue) => webhookSink({ url: `http://127.0.0.1:${String(port)}/hooks/${queue}`, secret: SECRET }),
      publishDirect: async (queue, messages, concurrency) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
              await post(`/hooks/${queue}`, m.payload, { ...m.headers, 'idempotency-key': m.messageId });
            }
          }),
        );
      },
      consume: (_queue, onMessage) => {
        onCorrelation = onMessage;
        return Promise.resolve({
          stop: () => {
            onCorrelation = undefined;
            return Promise.resolve();
          },
        });
      },
      close: () => Promise.resolve(),
    },
    { rows, rounds, payloadBytes: 256, concurrency: 64, ratePerSecond: 200, latencySeconds: 10 },
  );
  console.log(table);
} finally {
  agent.destroy();
  child.kill();
}
