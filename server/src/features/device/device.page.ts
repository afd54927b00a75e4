import type { FastifyReply } from 'fastify';

/** Text for HTML: the five characters that could open markup or leave an attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Headers of every hosted page: nothing loads from elsewhere, forms post only here, no framing
 * (an approve button must not be clickjacked), no caching, and no Referer carrying the user code.
 */
function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header(
      'content-security-policy',
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store');
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font:inherit;cursor:pointer}.code{font:600 1.6rem monospace;letter-spacing:.1em}
.error{color:#b00020}.note{color:#555;font-size:.9rem}`;

/** One hosted page: a title, an optional error, and trusted markup (callers escape what they interpolate). */
export function sendPage(reply: FastifyReply, status: number, title: string, body: string, error?: string) {
  return pageHeaders(reply)
    .status(status)
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
        `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><h1>${escapeHtml(title)}</h1>` +
        (error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '') +
        `${body}</body></html>`,
    );
}

/** The first step: the code shown on the device, and the account to approve it with. */
export function codeForm(csrf: string, userCode: string, signedInAs: string | null): string {
  const account = signedInAs
    ? `<p class="note">Signed in as ${escapeHtml(signedInAs)}. Leave email and password empty to continue as them.</p>`
    : '';
  return (
    `<p>Enter the code shown on your device, and sign in to approve it.</p>` +
    `<form method="post" action="/device">` +
    `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">` +
    `<label for="user_code">Code</label><input id="user_code" name="user_code" value="${escapeHtml(userCode)}" autocomplete="off" autocapitalize="characters" required>` +
    account +
    `<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username">` +
    `<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">` +
    `<button type="submit">Continue</button></form>`
  );
}

/** The second step: which application asks, for which account; approve or deny. */
export function confirmForm(csrf: string, userCode: string, clientId: string, email: string, tenant: string): string {
  return (
    `<p><strong>${escapeHtml(clientId)}</strong> asks to sign in to <strong>${escapeHtml(tenant)}</strong> as <strong>${escapeHtml(email)}</strong>.</p>` +
    `<p>Check that your device shows this code:</p><p class="code">${escapeHtml(userCode)}</p>` +
    `<p class="note">Approve only if you started this sign-in yourself.</p>` +
    `<form method="post" action="/device/decision">` +
    `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">` +
    `<input type="hidden" name="user_code" value="${escapeHtml(userCode)}">` +
    `<button type="submit" name="decision" value="approve">Approve</button>` +
    `<button type="submit" name="decision" value="deny">Deny</button></form>`
  );
}
