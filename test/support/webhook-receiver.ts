/**
 * A real HTTP server on 127.0.0.1 for the webhook sink's tests: records every request it reads in
 * full (method, path, headers, body bytes) and answers with `answer` (204 unless told otherwise).
 * stop() closes it the hard way (in-flight requests lose their connection, as in a crash);
 * restart() listens again on the same port.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Answers one request; called once its whole body has arrived. */
export type Answer = (request: ReceivedRequest, response: ServerResponse) => void;

const LISTEN_ATTEMPTS = 50;

export class WebhookReceiver {
  readonly requests: ReceivedRequest[] = [];
  answer: Answer = (_request, response) => {
    response.writeHead(204).end();
  };
  /** Called with each request as it is recorded, before it is answered. */
  onRequest: (request: ReceivedRequest) => void = () => undefined;
  #server: Server;
  #port = 0;

  private constructor() {
    this.#server = this.#create();
  }

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await receiver.#listen(0);
    return receiver;
  }

  get port(): number {
    return this.#port;
  }

  /** `http://127.0.0.1:<port><path>` */
  url(path = '/'): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  /** Closes the listener and every connection at once, in-flight requests included. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.#server.close(() => {
        resolve();
      }),
    );
    this.#server.closeAllConnections();
    await closed;
  }

  /** Listens again on the same port (retried briefly should the port still be held). */
  async restart(): Promise<void> {
    this.#server = this.#create();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#listen(this.#port);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === LISTEN_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  #create(): Server {
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const received: ReceivedRequest = {
          method: request.method ?? '',
          path: request.url ?? '',
          headers: request.headers,
          body: Buffer.concat(chunks),
        };
        this.requests.push(received);
        this.onRequest(received);
        this.answer(received, response);
      });
    });
    server.keepAliveTimeout = 30_000;
    return server;
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        const address = this.#server.address();
        if (address !== null && typeof address === 'object') this.#port = address.port;
        resolve();
      });
    });
  }
}
