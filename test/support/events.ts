import type { OutboxEvent } from '../../src/index.js';
import { waitFor } from './wait-for.js';

type EventOf<T extends OutboxEvent['type']> = Extract<OutboxEvent, { type: T }>;

/** A recorder that keeps every event, for asserting exactly what the outbox reported. */
export class EventLog {
  readonly events: OutboxEvent[] = [];
  readonly recorder = (event: OutboxEvent): void => {
    this.events.push(event);
  };

  of<T extends OutboxEvent['type']>(type: T): EventOf<T>[] {
    return this.events.filter((event): event is EventOf<T> => event.type === type);
  }

  async waitFor<T extends OutboxEvent['type']>(type: T, count = 1, timeoutMs = 10_000): Promise<EventOf<T>[]> {
    await waitFor(() => this.of(type).length >= count, { timeoutMs, what: `${count} × ${type} (have ${this.of(type).length})` });
    return this.of(type);
  }
}
