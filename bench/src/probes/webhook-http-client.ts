/**
 * Which HTTP client the webhook sink uses (src/relay/sinks/webhook-request.ts): many concurrent small
 * POSTs, as a relay sends them, through node:http with a keep-alive Agent vs Node's global fetch
 * (undici), both with zero dependencies. The receiver runs in a worker thread (its own event loop)
 * and answers 204 once it has read the body; each way sends the same 200-byte JSON body with the
 * sink's kind of headers, C requests in flight, in interleaved rounds. A third way is the shipped
 * sink itself (node:http plus its header mapping and an HMAC signature per request).
 *
 *   node --import tsx bench/src/probes/webhook-http-client.ts [requests per round, default 20000] [in flight, default 64] [rounds, default 3]
 *
 * Round 1 includes warm-up (JIT, connections): read rounds 2 and later. Client CPU is this thread's.
 */
import http from 'node:http';
import { Worker } from 'node:worker_threads';

import type { RelayMessage } from '../../../src/relay/sink.js';
import { webhookSink } from '../../../src/relay/sinks/webhook-sink.js';

const requests = Number(process.argv[2] ?? 20_000);
const inFlight = Number(process.argv[3] ?? 64);
const rounds = Number(process.argv[4] ?? 3);

const RECEIVER = `
const http = require('node:http');
const { parentPort } = require('node:worker_threads');
const server = http.createServer((request, response) => {
  request.on('data', () => undefined);
  request.on('end', () => response.writeHead(204).end());
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
`;

const worker = new Worker(RECEIVER, { eval: true });
const port = await new Promise<number>((resolve) => worker.once('message', resolve));
const url = `http://127.0.0.1:${port}/hooks/orders`;
const body = Buffer.from(
  JSON.stringify({ orderId: 12345, customer: 'customer-7', total: '99.95', items: [1, 2, 3], note: 'x'.repeat(100) }),
);
const headers = {
  'content-type': 'application/json',
  'idempotency-key': 'txoutbox.outbox:1',
  'x-txoutbox-message-id': 'txoutbox.outbox:1',
  'correlation-id': '7f0c6a57-1d34-4c1e-9a38-61f7f3b3a2b1',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
};
const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight, maxFreeSockets: inFlight, scheduling: 'lifo' });

function viaNodeHttp(): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent, headers: { ...headers, 'content-length': body.length } },
      (response) => {
        response.resume();
        response.on('end', () => {
          if ((response.statusCode ?? 0) < 300) resolve();
          else reject(new Error(`HTTP ${response.statusCode}`));
        });
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

async function viaFetch(): Promise<void> {
  const response = await fetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(10_000) });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

async function measure(send: () => Promise<void>): Promise<{ perSecond: number; cpuMicros: number }> {
  let next = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next++ < requests) await send();
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { perSecond: requests / seconds, cpuMicros: (used.user + used.system) / requests };
}

const sink = webhookSink({ url, secret: 'probe-secret', maxSockets: inFlight });
const message: RelayMessage = {
  messageId: 'txoutbox.outbox:1',
  id: '1',
  queue: 'orders',
  orderingKey: null,
  payload: body,
  headers,
  correlationId: headers['correlation-id'],
  createdAt: new Date(),
  deliveriesCount: 1,
};
const signal = new AbortController().signal;
const viaSink = (): Promise<void> => sink.send(message, { signal });

const ways = [
  { label: 'node:http, keep-alive Agent', send: viaNodeHttp },
  { label: 'fetch (undici)', send: viaFetch },
  { label: 'webhookSink (node:http, signed)', send: viaSink },
] as const;
console.log(`| round | client | requests/s | client CPU µs/request |\n|---|---|---:|---:|`);
try {
  for (let round = 1; round <= rounds; round++) {
    const order = [...ways.slice(round % ways.length), ...ways.slice(0, round % ways.length)];
    for (const way of order) {
      const { perSecond, cpuMicros } = await measure(way.send);
      console.log(`| ${round} | ${way.label} | ${Math.round(perSecond)} | ${Math.round(cpuMicros)} |`);
    }
  }
} finally {
  agent.destroy();
  await sink.close();
  await worker.terminate();
}
