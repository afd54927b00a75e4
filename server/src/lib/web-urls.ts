import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * What a URL that a tenant admin or an app hands Gatehouse is for:
 * - `redirect`: where a browser is sent after an OAuth flow (allowed_redirect_uris, redirect_uri,
 *   redirect_after);
 * - `origin`: a browser origin allowed by CORS (allowed_origins);
 * - `webhook`: where Gatehouse POSTs events (its host is judged by the outbound guard).
 */
export type WebUrlUse = 'redirect' | 'origin' | 'webhook';

/**
 * Hosts that never leave the machine: 127.0.0.0/8, ::1 and `localhost` (RFC 8252 §7.3 loopback
 * redirects; §8.3 discourages `localhost` but development servers use it everywhere).
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost') return true;
  return isIP(host) !== 0 && ipaddr.process(host).range() === 'loopback';
}

/**
 * Why `text` is not acceptable as a URL of this use, or null when it is (ADR 0015). Only http(s):
 * `javascript:`, `data:`, `file:` and custom schemes are refused everywhere. Redirects and origins
 * are https, or plain http on a loopback host only (RFC 6749 §3.1.2.1 asks TLS of redirection
 * endpoints; RFC 8252 §7.3 allows http for loopback); webhooks may be http (the payload is signed,
 * and the outbound guard decides which hosts are reachable). No credentials in any; no fragment in
 * a redirect (RFC 6749 §3.1.2); an origin is exactly `scheme://host[:port]` as browsers send it.
 */
export function webUrlProblem(text: string, use: WebUrlUse): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be an absolute URL such as https://app.example.com/callback';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return `must be an https URL (${url.protocol} is not allowed)`;
  }
  if (url.protocol === 'http:' && use !== 'webhook' && !isLoopbackHost(url.hostname)) {
    return 'must be https (plain http only on a loopback host: 127.0.0.1, [::1] or localhost)';
  }
  if (url.username || url.password) return 'must not carry credentials';
  if (use === 'redirect' && text.includes('#')) return 'must not have a fragment (#…)';
  if (use === 'origin' && text !== url.origin) return `must be exactly scheme://host[:port], as in ${url.origin}`;
  return null;
}
