import { createHmac } from 'node:crypto';

/**
 * The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, one `v1`
 * per secret (several while a secret is being rotated). Stripe's scheme, so receivers that verify
 * Stripe webhooks verify these the same way: recompute the HMAC over the `t` they were sent and
 * the raw body, compare in constant time, and reject a `t` too far from their clock (a replay).
 * `t` is taken per attempt, so a retry is signed afresh. Verification: architecture/relay.md.
 */
export function webhookSigner(secrets: readonly Buffer[], nowMs: () => number = Date.now): (body: Buffer) => string {
  return (body) => {
    const t = String(Math.floor(nowMs() / 1000));
    let value = `t=${t}`;
    for (const secret of secrets) {
      value += `,v1=${createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')}`;
    }
    return value;
  };
}
