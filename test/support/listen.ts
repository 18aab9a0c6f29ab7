import pg from 'pg';

import { quoteIdent } from '../../src/schema/identifiers.js';
import { waitFor } from './wait-for.js';

export interface Listener {
  readonly payloads: string[];
  /** The sending backend's pid of each notification, in the order of `payloads`. */
  readonly senders: number[];
  /**
   * Resolves once `payload` has arrived. Notifications arrive in commit order, so after a
   * committed sentinel arrives, anything an earlier transaction would have sent has arrived too.
   */
  waitFor(payload: string): Promise<void>;
  close(): Promise<void>;
}

/** A real LISTEN connection, recording every notification's payload on `channel`. */
export async function listen(url: string, channel: string): Promise<Listener> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const payloads: string[] = [];
  const senders: number[] = [];
  client.on('notification', (message) => {
    if (message.channel !== channel) return;
    payloads.push(message.payload ?? '');
    senders.push(message.processId);
  });
  await client.query(`LISTEN ${quoteIdent(channel)}`);
  return {
    payloads,
    senders,
    waitFor: (payload: string) => waitFor(() => payloads.includes(payload), { what: `NOTIFY ${payload}` }),
    close: () => client.end(),
  };
}
