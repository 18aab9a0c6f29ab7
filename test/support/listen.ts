import pg from 'pg';

import { quoteIdent } from '../../src/schema/identifiers.js';
import { waitFor } from './wait-for.js';

export interface Listener {
  readonly payloads: string[];
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
  client.on('notification', (message) => {
    if (message.channel === channel) payloads.push(message.payload ?? '');
  });
  await client.query(`LISTEN ${quoteIdent(channel)}`);
  return {
    payloads,
    waitFor: (payload: string) => waitFor(() => payloads.includes(payload), { what: `NOTIFY ${payload}` }),
    close: () => client.end(),
  };
}
