/**
 * nats-server (JetStream, file store) SIGKILLed and restarted under two relay workers
 * (broker-kill.ts). The sink's Nats-Msg-Id lets the stream drop a resend: nothing may be stored twice.
 * Full run only: with Redis's it would add ~40 s to --quick (each takes ~20 s), over its ~30 s allowance.
 */
import { brokerKill } from './broker-kill.js';

export const relayNatsKill = brokerKill('nats', { id: 'relay-nats-kill', quick: false });
