/**
 * redis-server SIGKILLed and restarted under two relay workers (broker-kill.ts). Redis cannot
 * deduplicate: an XADD applied whose reply the kill lost is appended again, and counted. Quick:
 * Redis starts in a few milliseconds.
 */
import { brokerKill } from './broker-kill.js';

export const relayRedisKill = brokerKill('redis', { id: 'relay-redis-kill', quick: true });
