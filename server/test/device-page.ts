import assert from 'node:assert/strict';
import type { Harness, TestResponse, TestUser } from './harness.js';

/** A browser on the hosted device page (/device): keeps its cookies and the CSRF field of the last page. */
export function pageBrowser(h: Pick<Harness, 'request'>, ip = '127.0.0.1') {
  const jar = new Map<string, string>();
  let csrf = '';
  const keep = (res: TestResponse) => {
    for (const line of [res.headers['set-cookie'] ?? []].flat()) {
      const [pair] = String(line).split(';');
      const [name, ...value] = pair.split('=');
      jar.set(name, value.join('='));
    }
    csrf = /name="csrf" value="([^"]+)"/.exec(res.text)?.[1] ?? csrf;
    return res;
  };
  const cookie = () => [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  return {
    get: async (url: string) => keep(await h.request({ method: 'GET', url, ip, headers: { cookie: cookie() } })),
    post: async (url: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
      keep(
        await h.request({
          method: 'POST',
          url,
          ip,
          form: { csrf, ...form },
          headers: { cookie: cookie(), ...headers },
        }),
      ),
    forget: () => jar.clear(),
  };
}

/** Approves a device sign-in as its person would: opens `verification_uri_complete`, signs in, approves. */
export async function approveDevice(h: Pick<Harness, 'request'>, verificationUriComplete: string, user: TestUser) {
  const browser = pageBrowser(h);
  const page = new URL(verificationUriComplete);
  const userCode = page.searchParams.get('user_code') ?? '';
  await browser.get(`${page.pathname}${page.search}`);
  await browser.post('/device', { user_code: userCode, email: user.email, password: user.password });
  const decided = await browser.post('/device/decision', { user_code: userCode, decision: 'approve' });
  assert.match(decided.text, /Approved/);
}
