import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { type FakeLlm, startFakeLlm } from '../../../test/fake-llm.js';
import {
  createHarness,
  fieldsOf,
  type Harness,
  listen,
  type TestTenant,
  type TestUser,
} from '../../../test/harness.js';

const SHARED_KEY = 'sk-shared-provider-key-never-leaves';

let h: Harness;
let primary: FakeLlm;
let backup: FakeLlm;
let baseURL: string;
before(async () => {
  // The fake providers listen on loopback, which only an operator's allowance opens.
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  [primary, backup] = await Promise.all([startFakeLlm(), startFakeLlm()]);
  // The official SDK needs a real socket.
  baseURL = `${await listen(h.app)}/api/llm/v1`;
});
after(async () => {
  await h.close();
  await Promise.all([primary.close(), backup.close()]);
});

/** A tenant whose `gpt-test` is served by the primary fake provider, then the backup. */
async function tenantWithProviders(): Promise<TestTenant> {
  const t = await h.tenant();
  const admin = await t.admin();
  for (const [name, fake, priority] of [
    ['primary', primary, 10],
    ['backup', backup, 1],
  ] as const) {
    const res = await h.request({
      method: 'POST',
      url: '/api/admin/llm/providers',
      token: admin.accessToken,
      body: { name, base_url: fake.url, api_key: `${SHARED_KEY}-${name}`, models: ['gpt-test'], priority },
    });
    assert.equal(res.status, 201, res.text);
  }
  return t;
}

const client = (user: TestUser) => new OpenAI({ baseURL, apiKey: user.apiKey, maxRetries: 0 });
const usageOf = async (user: TestUser) =>
  (await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey })).body;
const ask = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'Say hello' }] };

describe('POST /api/llm/v1/chat/completions through the openai SDK', () => {
  it('answers with the provider’s completion, charges exactly its usage, and sends the shared key only upstream', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const before = primary.calls.length;
    const { data: completion, response } = await client(user).chat.completions.create(ask).withResponse();
    assert.equal(completion.choices[0].message.content, 'Hello from the fake provider');
    assert.equal(completion.usage?.total_tokens, 18);
    assert.equal(response.headers.get('x-gatehouse-provider'), 'primary');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '50', 'the free plan’s LLM calls per hour');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '49');
    const call = primary.calls[before];
    assert.equal(call.authorization, `Bearer ${SHARED_KEY}-primary`);
    assert.equal(call.body.max_tokens, 1_000, 'the plan’s maximum when the client sets none');
    const usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved], [18, 0]);
    assert.deepEqual(
      [usage.totals.llm_requests, usage.totals.prompt_tokens, usage.totals.completion_tokens],
      [1, 11, 7],
    );
    const logs = h.logs.join('');
    assert.ok(!logs.includes(SHARED_KEY), 'the shared key is never logged');
  });

  it('counts with the tokenizer when the provider reports no usage', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('no_usage');
    await client(user).chat.completions.create(ask);
    const usage = await usageOf(user);
    // "Hello from the fake provider" is 5 tokens in o200k_base (the fake's usage would say 7);
    // the prompt is estimated the same way (the fake's would say 11).
    assert.equal(usage.totals.completion_tokens, 5);
    assert.ok(usage.totals.prompt_tokens > 0 && usage.totals.prompt_tokens !== 11);
    assert.equal(usage.tokens_used, usage.totals.prompt_tokens + 5);
  });

  it('fails over to the next provider on 500 and 429, and says 502 when none answers (nothing charged)', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('fail_500');
    const { response } = await client(user).chat.completions.create(ask).withResponse();
    assert.equal(response.headers.get('x-gatehouse-provider'), 'backup');
    primary.next('fail_429');
    backup.next('fail_500');
    await assert.rejects(client(user).chat.completions.create(ask), (error: unknown) => {
      assert.ok(error instanceof OpenAI.APIError);
      assert.equal(error.status, 502);
      return true;
    });
    const usage = await usageOf(user);
    assert.equal(usage.tokens_used, 18, 'only the call that was answered');
    assert.equal(usage.tokens_reserved, 0);
    assert.equal(usage.totals.errors, 1);
  });

  it('passes the provider’s own 400 through in OpenAI’s shape, charging nothing', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('bad_request');
    await assert.rejects(client(user).chat.completions.create({ ...ask, temperature: 9 }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.match(error.message, /temperature is out of range/);
      return true;
    });
    assert.equal((await usageOf(user)).tokens_used, 0);
  });

  it('a user with no budget left gets 429 quota_exceeded before any provider is called', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    await t.putOnPlan(user.id, { tokens_per_month: 100, max_tokens_per_request: 1_000 });
    const before = primary.calls.length + backup.calls.length;
    await assert.rejects(client(user).chat.completions.create({ ...ask, max_tokens: 200 }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.RateLimitError);
      assert.match(error.message, /Token budget exhausted/);
      return true;
    });
    assert.equal(primary.calls.length + backup.calls.length, before, 'no provider was called');
  });

  it('50 concurrent calls against a budget that fits 5 never overspend', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    // Each call holds its prompt estimate + 100 tokens; 5 fit in 600, the 6th does not.
    await t.putOnPlan(user.id, { tokens_per_month: 600, max_tokens_per_request: 100 });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => client(user).chat.completions.create({ ...ask, max_tokens: 100 })),
    );
    // At most 5 hold the budget at any moment; as calls settle (18 tokens each, not 112) others fit.
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(ok >= 5 && refused.length > 0, `${ok} calls got through`);
    for (const r of refused) assert.ok((r as PromiseRejectedResult).reason instanceof OpenAI.RateLimitError);
    const usage = await usageOf(user);
    assert.equal(usage.tokens_used, ok * 18, 'exactly the upstream usage of the calls that ran');
    assert.ok(usage.tokens_used <= 600);
    assert.equal(usage.tokens_reserved, 0);
  });

  it('400 naming the field for max_tokens over the plan’s maximum and for no messages; 404 for an unknown model', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const post = (body: Record<string, unknown>) =>
      h.request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body: { ...ask, ...body } });
    const big = await post({ max_tokens: 1_001 });
    assert.equal(big.status, 400);
    assert.match(big.body.error.message, /max_tokens must be at most 1000 on the free plan/);
    const unknown = await post({ model: 'nope' });
    assert.equal(unknown.status, 404);
    const noMessages = await post({ messages: [] });
    assert.equal(noMessages.status, 400);
  });
});

describe('streaming (stream: true) through the openai SDK', () => {
  async function collect(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) {
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
  }

  it('forwards the chunks and ends with the usage chunk although the client did not ask; charges exactly that usage', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const before = primary.calls.length;
    const chunks = await collect(await client(user).chat.completions.create({ ...ask, stream: true }));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Hello from the fake provider');
    const last = chunks.at(-1);
    assert.deepEqual(last?.choices, []);
    assert.deepEqual(last?.usage, { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 });
    assert.deepEqual(primary.calls[before].body.stream_options, { include_usage: true });
    const usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved, usage.totals.errors], [18, 0, 0]);
  });

  it('the raw stream is OpenAI’s SSE: data lines, the usage chunk, then data: [DONE]', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const res = await fetch(`${baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...ask, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(String(res.headers.get('content-type')), /^text\/event-stream/);
    assert.equal(res.headers.get('x-ratelimit-limit-requests'), '50');
    const events = (await res.text()).split('\n\n').filter(Boolean);
    assert.ok(events.every((e) => e.startsWith('data: ')));
    assert.equal(events.at(-1), 'data: [DONE]');
    assert.deepEqual(JSON.parse(events.at(-2)?.slice(6) ?? '{}').choices, []);
  });

  it('a provider that sends no usage: the usage chunk is counted with the tokenizer', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('no_usage');
    const chunks = await collect(await client(user).chat.completions.create({ ...ask, stream: true }));
    const usage = chunks.at(-1)?.usage;
    assert.equal(usage?.completion_tokens, 5, '"Hello from the fake provider" in o200k_base');
    assert.equal((await usageOf(user)).tokens_used, usage?.total_tokens);
  });

  it('a stream cut by the provider ends with an error event, never a clean finish; what was used is charged as failed', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('cut');
    const stream = await client(user).chat.completions.create({ ...ask, stream: true });
    let text = '';
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      })(),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.APIError, String(error));
        assert.match(String((error as Error).message), /broke off/);
        return true;
      },
    );
    assert.equal(text, 'Hello from');
    const usage = await usageOf(user);
    assert.equal(usage.totals.errors, 1, 'recorded as failed');
    assert.equal(usage.totals.completion_tokens, 2, '"Hello from" so far');
    assert.equal(usage.tokens_reserved, 0);
  });

  it('failover happens before the first byte: a 500 from the primary streams from the backup', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('fail_500');
    const { data, response } = await client(user)
      .chat.completions.create({ ...ask, stream: true })
      .withResponse();
    assert.equal(response.headers.get('x-gatehouse-provider'), 'backup');
    const chunks = await collect(data);
    assert.equal(chunks.at(-1)?.usage?.total_tokens, 18);
  });

  it('a client that goes away aborts the provider call; the reservation is settled', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('hang_after_first');
    const abortedBefore = primary.aborted;
    const controller = new AbortController();
    const stream = await client(user).chat.completions.create({ ...ask, stream: true }, { signal: controller.signal });
    // The SDK ends the iteration (or throws, depending on timing) once the signal aborts.
    try {
      for await (const _chunk of stream) controller.abort();
    } catch {}
    for (let i = 0; i < 100 && primary.aborted === abortedBefore; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(primary.aborted, abortedBefore + 1, 'the provider saw its request aborted');
    // The settlement runs after the client is gone; its usage record follows the charge (write-behind).
    let usage = await usageOf(user);
    for (let i = 0; i < 100 && (usage.tokens_reserved !== 0 || usage.totals.errors !== 1); i++) {
      await new Promise((r) => setTimeout(r, 20));
      usage = await usageOf(user);
    }
    assert.equal(usage.tokens_reserved, 0, 'nothing stays held');
    assert.equal(usage.totals.errors, 1, 'recorded as cancelled');
  });
});

describe('POST /api/llm/completion (seed 001’s simple form)', () => {
  const complete = (user: TestUser, body: Record<string, unknown>) =>
    h.request({ method: 'POST', url: '/api/llm/completion', token: user.apiKey, body });

  it('a prompt in, the text out, with what was charged and what is left', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const res = await complete(user, { prompt: 'Say hello', model: 'gpt-test', max_tokens: 50 });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, {
      id: 'chatcmpl-fake',
      model: 'gpt-test',
      provider: 'primary',
      text: 'Hello from the fake provider',
      finish_reason: 'stop',
      usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
      cost_usd: 0,
      tokens_remaining: 10_000 - 18,
    });
    const sent = primary.calls.at(-1)?.body;
    assert.deepEqual(sent?.messages, [{ role: 'user', content: 'Say hello' }]);
    assert.equal(sent?.max_tokens, 50);
  });

  it('counted usage when the provider reports none; the provider’s 400 as it came; 400 naming a missing prompt', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    primary.next('no_usage');
    const counted = await complete(user, { prompt: 'Say hello', model: 'gpt-test' });
    assert.equal(counted.body.usage.completion_tokens, 5);
    assert.equal(counted.body.tokens_remaining, 10_000 - counted.body.usage.total_tokens);
    primary.next('bad_request');
    const refused = await complete(user, { prompt: 'x', model: 'gpt-test' });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.param, 'temperature');
    const missing = await complete(user, { model: 'gpt-test' });
    assert.equal(missing.status, 400);
    assert.ok(fieldsOf(missing).includes('prompt'));
  });

  it('stream: true answers with the chat completion events', async () => {
    const t = await tenantWithProviders();
    const user = await t.user();
    const res = await fetch(`${baseURL.replace('/v1', '')}/completion`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Say hello', model: 'gpt-test', stream: true }),
    });
    assert.match(String(res.headers.get('content-type')), /^text\/event-stream/);
    const events = (await res.text()).split('\n\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]');
  });
});
