import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that counts the bytes the server sends: what a read really
 * fetched over the wire, which is what a byte budget must bound (a row the client drops after
 * receiving it has already cost its bytes). Forwards untouched in both directions.
 */
export class ByteCountProxy {
  readonly #server: Server;
  readonly #sockets: Set<Socket>;
  readonly #count: { bytes: number };
  readonly url: string;

  private constructor(server: Server, sockets: Set<Socket>, count: { bytes: number }, url: string) {
    this.#server = server;
    this.#sockets = sockets;
    this.#count = count;
    this.url = url;
  }

  /** Listens on a free loopback port in front of `targetUrl`'s host and port. */
  static async start(targetUrl: string): Promise<ByteCountProxy> {
    const target = new URL(targetUrl);
    const targetPort = Number(target.port === '' ? 5432 : target.port);
    const sockets = new Set<Socket>();
    const count = { bytes: 0 };
    const track = (socket: Socket): void => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    };
    const server = createServer((client) => {
      const upstream = connect(targetPort, target.hostname);
      track(client);
      track(upstream);
      upstream.on('data', (chunk: Buffer) => {
        count.bytes += chunk.length;
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const close = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
    const url = new URL(targetUrl);
    url.hostname = '127.0.0.1';
    url.port = String(address.port);
    return new ByteCountProxy(server, sockets, count, url.toString());
  }

  /** Bytes the server sent, over every connection, since start or the last reset(). */
  get bytesFromServer(): number {
    return this.#count.bytes;
  }

  reset(): void {
    this.#count.bytes = 0;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve();
      });
    });
  }
}
