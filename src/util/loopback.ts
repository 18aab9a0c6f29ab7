import { isIP } from 'node:net';

/** 127.0.0.0/8, ::1 and `localhost`: only processes on this machine can connect. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * Whether a request's Host header names a loopback address. An endpoint bound to loopback answers
 * only those: a page on evil.example whose DNS answer flips to 127.0.0.1 (DNS rebinding) is
 * otherwise same-origin with it and can read what it serves.
 */
export function hostHeaderIsLoopback(host: string | undefined): boolean {
  // No Host at all is not a browser (every browser sends one): an HTTP/1.0 probe, netcat.
  if (host === undefined) return true;
  const lower = host.toLowerCase();
  const name = lower.startsWith('[') ? lower.slice(0, lower.indexOf(']') + 1) : lower.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}
