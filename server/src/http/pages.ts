import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { CookieSerializeOptions } from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';

// What every hosted page (device approval, vault connect) shares: its headers, its frame, its
// cookies and its CSRF defence. Pages are plain server-rendered HTML without script.

/** Text for HTML: the five characters that could open markup or leave an attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Headers of every hosted page: nothing loads from elsewhere, forms post only here, no framing (an
 * approve button must not be clickjacked), no caching. `Referrer-Policy: same-origin`: no Referer
 * (with the codes and states in our URLs) leaves the site, while the page's own form posts keep a
 * real `Origin`; under `no-referrer` Chromium sends `Origin: null` on them, which a CSRF check
 * cannot tell from a forged post (Fetch standard, "serializing a request origin").
 */
function pageHeaders(reply: FastifyReply, formAction: string): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'unsafe-inline'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    )
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header('cache-control', 'no-store');
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font:inherit;cursor:pointer}.code{font:600 1.6rem monospace;letter-spacing:.1em}
.error{color:#b00020}.note{color:#555;font-size:.9rem}code{background:#f2f2f2;padding:0 .2rem;word-break:break-all}`;

export interface PageOptions {
  /**
   * CSP `form-action` (default `'self'`). Browsers check it on every redirect a form submission
   * leads to, so a form whose answer redirects to another site (the vault's Continue, on to the
   * provider and then the app) needs a wider one.
   */
  formAction?: string;
}

/** One hosted page: a title, an optional error, and trusted markup (callers escape what they interpolate). */
export function sendPage(
  reply: FastifyReply,
  status: number,
  title: string,
  body: string,
  error?: string,
  options: PageOptions = {},
) {
  return pageHeaders(reply, options.formAction ?? "'self'")
    .status(status)
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
        `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><h1>${escapeHtml(title)}</h1>` +
        (error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '') +
        `${body}</body></html>`,
    );
}

/** A cookie of the hosted pages: its name and options. */
export interface PageCookie {
  name: string;
  options: CookieSerializeOptions;
}

/**
 * A hosted page's cookie (DESIGN: `__Host-`, Secure, HttpOnly, SameSite). Over https it is
 * `__Host-<name>` (Secure, Path=/, no Domain: a sibling subdomain cannot set or overwrite it);
 * over plain http (local development) browsers refuse `__Host-` and `Secure`, so it is `<name>`.
 */
export function pageCookie(publicUrl: string, name: string, sameSite: 'strict' | 'lax'): PageCookie {
  const secure = new URL(publicUrl).protocol === 'https:';
  return {
    name: secure ? `__Host-${name}` : name,
    options: { httpOnly: true, secure, path: '/', sameSite },
  };
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/**
 * CSRF for the hosted pages' forms, per the OWASP CSRF cheat sheet: a double-submitted token (a
 * SameSite=Strict cookie and a form field, compared in constant time), and the origin the browser
 * really sends (DESIGN). `token` gives this browser's token (minting and setting it when missing);
 * `check` accepts a form post only when both agree.
 */
export function pageCsrf(publicUrl: string, name: string) {
  const origin = new URL(publicUrl).origin;
  const cookie = pageCookie(publicUrl, name, 'strict');
  return {
    token(request: FastifyRequest, reply: FastifyReply): string {
      const existing = request.cookies[cookie.name];
      if (existing && TOKEN.test(existing)) return existing;
      const token = randomBytes(32).toString('base64url');
      reply.setCookie(cookie.name, token, cookie.options);
      return token;
    },
    check(request: FastifyRequest): boolean {
      if (!sameOrigin(request, origin)) return false;
      const field = (request.body as { csrf?: unknown } | undefined)?.csrf;
      const stored = request.cookies[cookie.name];
      if (typeof field !== 'string' || !stored || field.length !== stored.length) return false;
      return timingSafeEqual(Buffer.from(field), Buffer.from(stored));
    },
  };
}

/**
 * Whether a form post comes from our own pages, as far as the browser tells. Fetch Metadata first
 * (`Sec-Fetch-Site`, which a page cannot forge): only `same-origin`; a browser that sends it also
 * tells the relation truthfully where its `Origin` may be `null` (a strict referrer policy, a
 * privacy setting). Without it (older browsers), `Origin` must be ours when sent; `null` is refused.
 * The token decides the rest.
 */
function sameOrigin(request: FastifyRequest, origin: string): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin';
  const sent = request.headers.origin;
  return sent === undefined || sent === origin;
}
