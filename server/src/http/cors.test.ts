import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { launchChromium, NO_CHROMIUM, servePages } from '../../test/browser.js';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../test/fake-llm.js';
import { createHarness, type Harness, listen } from '../../test/harness.js';

// The official `openai` SDK, bundled for the browser, calling the gateway from a page on another
// origin in real Chromium: the preflight must allow its headers, and the page must be able to read
// the limit and cost headers (CORS hides every response header it is not told to expose).

let h: Harness;
let llm: FakeLlm;
let browser: Browser | null;
let gatehouse: string;
let openaiBundle: string;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  llm = await startFakeLlm();
  gatehouse = await listen(h.app);
  browser = await launchChromium();
  const bundle = await build({
    stdin: {
      contents: "export { default as OpenAI } from 'openai';",
      resolveDir: dirname(fileURLToPath(import.meta.url)),
    },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    logLevel: 'silent',
  });
  openaiBundle = bundle.outputFiles[0].text;
});
after(async () => {
  await browser?.close();
  await h.close();
  await llm.close();
});

const allowOrigins = async (tenantId: string, origins: string[]) => {
  const res = await h.request({
    method: 'PATCH',
    url: `/api/admin/tenants/${tenantId}`,
    token: h.operator.token,
    body: { settings: { allowed_origins: origins } },
  });
  assert.equal(res.status, 200, res.text);
};

/** What the page reports back from its calls through the SDK. */
interface PageResult {
  content?: string;
  headers?: Record<string, string | null>;
  requestId?: string | null;
  error?: { name: string; status?: number; retryAfter?: string | null; message: string };
}

const READ = [
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-remaining-tokens',
  'x-gatehouse-cost-usd',
  'x-gatehouse-provider',
  'x-request-id',
];

describe('the openai SDK in a browser page (Chromium)', () => {
  it('200 from an allowed origin: its headers pass the preflight, and it reads the limit and cost headers', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const t = await tenantServedBy(h, llm);
    const user = await t.user();
    await t.putOnPlan(user.id, { llm_requests_per_hour: 2, tokens_per_month: 10_000 });
    const app = await servePages({
      '/': { type: 'text/html', body: '<!doctype html><title>app</title>' },
      '/openai.js': { type: 'text/javascript', body: openaiBundle },
    });
    const other = await servePages({
      '/': { type: 'text/html', body: '<!doctype html><title>elsewhere</title>' },
      '/openai.js': { type: 'text/javascript', body: openaiBundle },
    });
    const context = await browser.newContext();
    try {
      await allowOrigins(t.id, [app.origin]);
      const call = async (origin: string): Promise<PageResult> => {
        const page = await context.newPage();
        await page.goto(origin);
        return page.evaluate(
          async ({ baseURL, apiKey, read }) => {
            const { OpenAI } = await import(`${location.origin}/openai.js`);
            const client = new OpenAI({ baseURL, apiKey, dangerouslyAllowBrowser: true, maxRetries: 0 });
            try {
              const { data, response } = await client.chat.completions
                .create({ model: 'gpt-test', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 20 })
                .withResponse();
              const headers = Object.fromEntries(read.map((name: string) => [name, response.headers.get(name)]));
              return { content: data.choices[0].message.content, headers, requestId: data._request_id ?? null };
            } catch (e) {
              const error = e as Error & { status?: number; headers?: Headers };
              return {
                error: {
                  name: error.constructor.name,
                  status: error.status,
                  retryAfter: error.headers?.get('retry-after') ?? null,
                  message: error.message,
                },
              };
            }
          },
          { baseURL: `${gatehouse}/api/llm/v1`, apiKey: user.apiKey, read: READ },
        );
      };

      const ok = await call(app.origin);
      assert.equal(ok.error, undefined, JSON.stringify(ok.error));
      assert.equal(ok.content, 'Hello from the fake provider');
      assert.equal(ok.headers?.['x-ratelimit-limit-requests'], '2');
      assert.equal(ok.headers?.['x-ratelimit-remaining-requests'], '1');
      assert.ok(ok.headers?.['x-ratelimit-reset-requests'], 'the reset is readable');
      assert.match(ok.headers?.['x-ratelimit-remaining-tokens'] ?? '', /^\d+$/);
      assert.match(ok.headers?.['x-gatehouse-cost-usd'] ?? '', /^\d/);
      assert.equal(ok.headers?.['x-gatehouse-provider'], 'fake');
      assert.ok(ok.requestId, 'the SDK reads x-request-id');
      assert.equal(ok.requestId, ok.headers?.['x-request-id']);

      assert.equal((await call(app.origin)).error, undefined);
      const limited = await call(app.origin);
      assert.equal(limited.error?.name, 'RateLimitError', JSON.stringify(limited.error));
      assert.equal(limited.error?.status, 429);
      assert.match(limited.error?.retryAfter ?? '', /^\d+$/, 'the SDK sees Retry-After on a 429');

      const refused = await call(other.origin);
      assert.equal(refused.error?.name, 'APIConnectionError', 'an origin the tenant does not list is refused');
    } finally {
      await context.close();
      await app.close();
      await other.close();
    }
  });
});

describe('CORS preflight', () => {
  it("204 allows the openai SDK's headers for a listed origin, and only known ones", async () => {
    const t = await h.tenant();
    const origin = 'https://app.example.com';
    await allowOrigins(t.id, [origin]);
    const asked = [
      'authorization',
      'content-type',
      'x-stainless-os',
      'x-stainless-retry-count',
      'x-stainless-some-future-header',
      'openai-organization',
      'openai-project',
      'x-made-up',
    ].join(',');
    const res = await h.request({
      method: 'OPTIONS',
      url: '/api/llm/v1/chat/completions',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
    });
    assert.equal(res.status, 204);
    const allowed = String(res.headers['access-control-allow-headers']).split(', ');
    for (const name of asked.split(',').filter((n) => n !== 'x-made-up')) assert.ok(allowed.includes(name), name);
    assert.ok(!allowed.includes('x-made-up'), 'a header no known client sends is not allowed');
    assert.match(String(res.headers.vary), /Access-Control-Request-Headers/);
  });
});
