import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { CHROMIUM, launchChromium, NO_CHROMIUM } from '../../server/test/browser.js';
import { createHarness, type Harness, listen } from '../../server/test/harness.js';

let h: Harness;
let page: Server;
let pageOrigin: string;
let gatehouseUrl: string;
before(async () => {
  h = await createHarness();
  gatehouseUrl = await listen(h.app);
  // The SDK as a browser bundle, served by a page on another origin (so CORS is exercised too).
  const bundle = await build({
    entryPoints: [join(dirname(fileURLToPath(import.meta.url)), '../src/index.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    logLevel: 'silent',
  });
  const code = bundle.outputFiles[0].text;
  page = createServer((request, response) => {
    if (request.url === '/sdk.js') return response.writeHead(200, { 'content-type': 'text/javascript' }).end(code);
    response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>');
  });
  await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
});
after(async () => {
  await h.close();
  page?.close();
});

describe('@gatehouse/sdk in a browser (Chromium)', () => {
  it('signs up, keeps its tokens in localStorage, calls the API, and gets a live event over the browser WebSocket', async (ctx) => {
    if (!CHROMIUM) return ctx.skip(NO_CHROMIUM);
    const t = await h.tenant();
    const allowed = await h.request({
      method: 'PATCH',
      url: `/api/admin/tenants/${t.id}`,
      token: h.operator.token,
      body: { settings: { allowed_origins: [pageOrigin] } },
    });
    assert.equal(allowed.status, 200, allowed.text);

    const browser = await launchChromium();
    if (!browser) throw new Error('chromium did not start');
    try {
      const tab = await browser.newPage();
      await tab.goto(pageOrigin);
      const result = await tab.evaluate(
        async ({ sdkUrl, baseUrl, tenant }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createClient({ baseUrl, tenant, storage: sdk.browserStorage() });
          await client.auth.register({
            email: `browser-${Date.now()}@example.com`,
            password: 'correct horse battery staple',
          });
          const me = await client.auth.me();
          const stored = JSON.parse(localStorage.getItem('gatehouse.tokens') ?? 'null');
          const feed = client.realtime.connect(); // the browser's own WebSocket
          await new Promise((resolve) => feed.on('open', resolve));
          const event = new Promise<string>((resolve) => feed.on('event', (e: { type: string }) => resolve(e.type)));
          await client.keys.create({ name: 'from-the-browser' });
          const type = await event;
          feed.close();
          let error = '';
          try {
            await client.auth.register({ email: 'bad', password: 'x' });
          } catch (e) {
            error = `${(e as Error).name}:${(e as { code: string }).code}`;
          }
          return { email: me.email, stored: stored !== null && typeof stored.accessToken === 'string', type, error };
        },
        { sdkUrl: `${pageOrigin}/sdk.js`, baseUrl: gatehouseUrl, tenant: t.publishableKey },
      );
      assert.match(result.email, /^browser-/);
      assert.equal(result.stored, true);
      assert.equal(result.type, 'api_key.created');
      assert.equal(result.error, 'ValidationError:validation_failed');
    } finally {
      await browser.close();
    }
  });
});
