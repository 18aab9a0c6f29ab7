/**
 * A TCP proxy in front of PostgreSQL that fails the way networks do, without closing anything:
 *
 * - freeze(): every connection, and every new one, stops forwarding in both directions; the sockets
 *   stay open, so the client sees a server that went silent (a partition, a frozen VM). thaw()
 *   resumes them where they stopped: no byte is lost or reordered.
 * - dropHalfOpen(): the connections open now stop forwarding for good, without FIN or RST (a NAT or
 *   firewall that forgot them, a peer that vanished); new connections work. Bytes the client sends
 *   on a dropped connection are discarded.
 *
 * TCP keepalive cannot see either: the proxy's own kernel answers the probes. So what the scenarios
 * check is what a client must do against a silent peer at the application level (timeouts).
 *
 * - muteAnswersAfter(marker): the first connection that sends `marker` from then on (a statement's
 *   name, in its Bind) goes on carrying what the client sends and drops what the server answers:
 *   that statement runs (a COMMIT lands) and its answer never arrives, as when a link fails
 *   between the two. Closing either side still closes the other. Other connections work.
 * - failOverAt(marker, port): when a connection sends `marker` from then on (a statement's name, or
 *   its text), every open connection is dropped half-open before that chunk reaches the server (the
 *   primary went away with the statement unsent), and new connections go to `port` (the promoted
 *   standby).
 * - terminateAtConnect(): new connections get, in the same write as the ReadyForQuery that
 *   completes their startup, the FATAL a `pg_terminate_backend` sends (57P01), and are closed: a
 *   backend terminated as the connection became ready, both messages in one read on the client.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

type LinkState = 'open' | 'frozen' | 'dead';

/** ReadyForQuery, idle: what ends a connection's startup. */
const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);

/** The ErrorResponse of a terminated backend, as PostgreSQL sends it (severity, code, message). */
function terminatedBackend(): Buffer {
  const fields = Buffer.concat([
    ...[
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '57P01'],
      ['M', 'terminating connection due to administrator command'],
    ].map(([code, value]) => Buffer.from(`${code as string}${value as string}\0`)),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

interface Link {
  readonly client: Socket;
  /** terminateAtConnect() was on when it opened. */
  readonly terminateAtReady: boolean;
  upstream: Socket | undefined;
  state: LinkState;
  /** A side closed while the link was frozen: closed for real when it thaws. */
  closedWhileFrozen: boolean;
  /** muteAnswersAfter() chose it: the server's bytes are dropped, the client's still forwarded. */
  answersMuted: boolean;
}

export class TcpProxy {
  readonly #server: Server;
  #targetPort: number;
  readonly #links = new Set<Link>();
  #frozen = false;
  #terminateAtConnect = false;
  /** muteAnswersAfter(): the bytes whose sender's answers are muted next, once. */
  #muteAfter: Buffer | undefined;
  /** failOverAt(): the bytes that set the failover off, and the port new connections go to then; once. */
  #failOver: { readonly marker: Buffer; readonly port: number } | undefined;

  private constructor(server: Server, targetPort: number) {
    this.#server = server;
    this.#targetPort = targetPort;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server, targetPort);
    server.on('connection', (socket) => {
      proxy.#accept(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        resolve();
      });
    });
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy is not listening');
    return address.port;
  }

  /** The connection string `url` rewritten to go through this proxy. */
  via(url: string): string {
    const parsed = new URL(url);
    parsed.port = String(this.port);
    return parsed.toString();
  }

  get connections(): number {
    return this.#links.size;
  }

  #accept(client: Socket): void {
    const link: Link = {
      client,
      terminateAtReady: this.#terminateAtConnect,
      upstream: undefined,
      state: this.#frozen ? 'frozen' : 'open',
      closedWhileFrozen: false,
      answersMuted: false,
    };
    this.#links.add(link);
    client.on('error', () => undefined);
    client.on('close', () => {
      this.#closed(link);
    });
    if (link.state === 'frozen') client.pause();
    else this.#connectUpstream(link);
  }

  #connectUpstream(link: Link): void {
    const upstream = connect(this.#targetPort, '127.0.0.1');
    link.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('close', () => {
      this.#closed(link);
    });
    this.#pipe(link, link.client, upstream);
    if (link.terminateAtReady) this.#terminateAtReady(link, upstream);
    else this.#pipe(link, upstream, link.client);
  }

  /**
   * Forwards the startup (authentication exchanges included) until its ReadyForQuery, then sends
   * that with a FATAL in one write and closes. A ReadyForQuery split across two reads is not
   * recognised (loopback delivers the startup's last messages in one).
   */
  #terminateAtReady(link: Link, upstream: Socket): void {
    upstream.on('data', (chunk: Buffer) => {
      if (link.state === 'dead') return;
      const ready = chunk.indexOf(READY_IDLE);
      if (ready === -1) {
        link.client.write(chunk);
        return;
      }
      link.state = 'dead';
      link.client.end(Buffer.concat([chunk.subarray(0, ready + READY_IDLE.length), terminatedBackend()]));
      upstream.destroy();
    });
  }

  #pipe(link: Link, from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.#muteAfter !== undefined && from === link.client && chunk.includes(this.#muteAfter)) {
        this.#muteAfter = undefined;
        link.answersMuted = true;
      }
      if (this.#failOver !== undefined && from === link.client && chunk.includes(this.#failOver.marker)) {
        this.#targetPort = this.#failOver.port;
        this.#failOver = undefined;
        this.dropHalfOpen();
      }
      if (link.state === 'dead' || (link.answersMuted && to === link.client)) return;
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (link.state === 'open') from.resume();
    });
  }

  #closed(link: Link): void {
    if (link.state === 'open') {
      link.client.destroy();
      link.upstream?.destroy();
      this.#links.delete(link);
    } else if (link.state === 'frozen') {
      link.closedWhileFrozen = true;
    }
    // dead: nothing reaches the other side, not even the close.
  }

  freeze(): void {
    this.#frozen = true;
    for (const link of this.#links) {
      if (link.state !== 'open') continue;
      link.state = 'frozen';
      link.client.pause();
      link.upstream?.pause();
    }
  }

  thaw(): void {
    this.#frozen = false;
    for (const link of [...this.#links]) {
      if (link.state !== 'frozen') continue;
      link.state = 'open';
      if (link.closedWhileFrozen) {
        this.#closed(link);
        continue;
      }
      if (link.upstream === undefined) this.#connectUpstream(link);
      link.client.resume();
      link.upstream?.resume();
    }
  }

  /** From now on (`on`), new connections are terminated as they become ready (see the class comment). */
  terminateAtConnect(on: boolean): void {
    this.#terminateAtConnect = on;
  }

  /** The first connection to send `marker` from now on has its answers dropped from then (see the class comment). */
  muteAnswersAfter(marker: string): void {
    this.#muteAfter = Buffer.from(marker);
  }

  /** When a connection sends `marker` from now on, the open connections are dropped before it and new ones go to `port` (see the class comment). */
  failOverAt(marker: string, port: number): void {
    this.#failOver = { marker: Buffer.from(marker), port };
  }

  /** New connections go to `port` from now on; open ones stay where they are (a DNS name or VIP moved). */
  retarget(port: number): void {
    this.#targetPort = port;
  }

  /** Makes every open connection half-open for good; returns how many. New connections still work. */
  dropHalfOpen(): number {
    let dropped = 0;
    for (const link of this.#links) {
      if (link.state === 'dead') continue;
      link.state = 'dead';
      // Keep reading (and discarding) so the client's writes never block: to it the peer just went quiet.
      link.client.resume();
      link.upstream?.pause();
      dropped += 1;
    }
    return dropped;
  }

  async close(): Promise<void> {
    for (const link of this.#links) {
      link.client.destroy();
      link.upstream?.destroy();
    }
    this.#links.clear();
    await new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve();
      });
    });
  }
}
