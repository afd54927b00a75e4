import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { Harness, TestResponse } from './harness.js';

// Real Chromium for the tests of what people see: Debian's chromium driven by playwright-core.
// Every hosted HTML page is tested in it, not only through inject (a browser decides what Origin,
// Sec-Fetch-Site and cookies it sends; inject sends whatever the test writes).

/** Debian's chromium (apt-get install chromium; .ci/run installs it when missing). */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));

/** Why a browser test skips. */
export const NO_CHROMIUM = 'needs Debian chromium (apt-get install chromium; .ci/run installs it when missing)';

/**
 * Launches Chromium, or null when it is not installed. `hosts` maps a host of a URL (as
 * `gatehouse.test`, the harness's PUBLIC_URL) to the loopback address a server really listens on,
 * so the browser sees Gatehouse at its public origin: the Host, Origin and cookies are those of
 * `PUBLIC_URL`, as behind a real domain.
 */
export async function launchChromium(hosts: Record<string, string> = {}): Promise<Browser | null> {
  if (!CHROMIUM) return null;
  const rules = Object.entries(hosts).map(([host, target]) => {
    const to = new URL(target);
    return `MAP ${host}:80 ${to.hostname}:${to.port}`;
  });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...(rules.length > 0 ? [`--host-resolver-rules=${rules.join(',')}`] : []),
    ],
  });
}

/** Clicks what submits a form and waits for the page it leads to (after any redirects); returns its status. */
export async function submit(page: Page, selector: string): Promise<number> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().isNavigationRequest() && (r.status() < 300 || r.status() >= 400)),
    page.click(selector),
  ]);
  await page.waitForLoadState('domcontentloaded');
  return response.status();
}

/** A tiny web server on another loopback port: another origin (an app's page, or an attacker's). */
export async function servePages(pages: Record<string, { type: string; body: string }>) {
  const server: Server = createServer((request, response) => {
    const page = pages[new URL(request.url ?? '/', 'http://x').pathname];
    if (!page) return response.writeHead(404).end();
    response.writeHead(200, { 'content-type': page.type }).end(page.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A browser's cookie jar and last form over inject: keeps the cookies it is sent and the CSRF field
 * of the last page, and sends them back. Only where Chromium cannot stand in: when it is not
 * installed, or to come from an address other than loopback.
 */
export function injectBrowser(h: Pick<Harness, 'request'>, ip = '127.0.0.1') {
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
  };
}
