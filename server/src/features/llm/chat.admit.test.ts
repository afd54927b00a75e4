import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../../test/fake-llm.js';
import { createHarness, fieldsOf, type Harness, listen, type TestUser } from '../../../test/harness.js';
import { countMessageTokens } from './tokens.js';

// What a call is checked against before a provider is called (ADR 0014): the prompt's size, the
// event loop while a large prompt is counted, and the completion a budget can still pay for.

let h: Harness;
let fake: FakeLlm;
let base: string;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  fake = await startFakeLlm();
  base = await listen(h.app);
});
after(async () => {
  await h.close();
  await fake.close();
});

const ask = { model: 'gpt-test', messages: [{ role: 'user', content: 'Say hello' }] };
const chat = (user: TestUser, body: Record<string, unknown>) =>
  h.request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body });
/** Over a real socket: each call its own HTTP request, as separate clients send them. */
const overSocket = (user: TestUser, body: Record<string, unknown>) =>
  fetch(`${base}/api/llm/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

/** A "word" of random letters: one piece to the tokenizer, and no two alike (nothing cached). */
function randomWord(length: number): string {
  let seed = 14;
  let word = '';
  for (let i = 0; i < length; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    word += String.fromCharCode(97 + (seed % 26));
  }
  return word;
}

describe('the prompt, counted without stalling anyone', () => {
  it('200 for a 200,000-character word, while a small call sent after it on another connection is answered first', async () => {
    const t = await tenantServedBy(h, fake);
    const big = await t.user();
    const small = await t.user();
    // No prompt or token limit: the whole word is counted. The hourly LLM limit shows when it is admitted.
    await t.putOnPlan(big.id, { llm_requests_per_hour: 1_000, max_tokens_per_request: 100 });
    const word = randomWord(200_000);
    const before = fake.calls.length;
    const bigCall = overSocket(big, { ...ask, messages: [{ role: 'user', content: word }] });
    // Counted against the hourly limit: admitted, its prompt next to be counted.
    for (;;) {
      const usage = await h.request({ method: 'GET', url: '/api/usage', token: big.apiKey });
      if (usage.body.limits.llm_requests_per_hour.remaining < 1_000) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const smallCall = await overSocket(small, ask);
    assert.equal(smallCall.status, 200, await smallCall.text());
    const answered = await bigCall;
    assert.equal(answered.status, 200, await answered.text());
    const order = fake.calls.slice(before).map((call) => {
      const [message] = call.body.messages as { content: string }[];
      return message.content === word ? 'big' : 'small';
    });
    assert.deepEqual(order, ['small', 'big'], 'the small call reached the provider while the word was being counted');
  });

  it('400 naming messages for a prompt over the plan’s max_prompt_tokens_per_request; no provider is called', async () => {
    const t = await tenantServedBy(h, fake);
    const user = await t.user();
    await t.putOnPlan(user.id, {
      tokens_per_month: 10_000,
      max_tokens_per_request: 100,
      max_prompt_tokens_per_request: 50,
    });
    const before = fake.calls.length;
    const long = { ...ask, messages: [{ role: 'user', content: 'word '.repeat(200) }] };
    const refused = await chat(user, long);
    assert.equal(refused.status, 400, refused.text);
    assert.deepEqual(fieldsOf(refused), ['messages']);
    assert.equal(fake.calls.length, before);
    const usage = (await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey })).body;
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved], [0, 0], 'nothing held or charged');
    assert.equal(usage.limits.max_prompt_tokens_per_request, 50);
    // Just within the limit is fine.
    const within = { ...ask, messages: [{ role: 'user', content: 'word '.repeat(40) }] };
    assert.ok((await countMessageTokens(within.messages)) <= 50);
    assert.equal((await chat(user, within)).status, 200);
  });

  it('new tenants’ plans bound the prompt: free 4,000 tokens, pro 32,000, enterprise 128,000', async () => {
    const t = await h.tenant();
    const plans = await h.request({ method: 'GET', url: '/api/admin/plans', token: h.operator.token, tenant: t.id });
    assert.equal(plans.status, 200, plans.text);
    const bound = Object.fromEntries(
      plans.body.data.map((p: { name: string; max_prompt_tokens_per_request: number }) => [
        p.name,
        p.max_prompt_tokens_per_request,
      ]),
    );
    assert.deepEqual(bound, { free: 4_000, pro: 32_000, enterprise: 128_000 });
  });

  it('200 for a prompt that contains special tokens (<|endoftext|>): they are counted as text', async () => {
    const t = await tenantServedBy(h, fake);
    const user = await t.user();
    const res = await chat(user, { ...ask, messages: [{ role: 'user', content: 'a<|endoftext|>b <|im_start|>' }] });
    assert.equal(res.status, 200, res.text);
  });
});

describe('what is left of the budget is what a call may use', () => {
  /** A user whose budget leaves exactly `left` tokens after the prompt of `ask`. */
  async function userWithLeft(left: number) {
    const t = await tenantServedBy(h, fake);
    const user = await t.user();
    const prompt = await countMessageTokens(ask.messages);
    await t.putOnPlan(user.id, { tokens_per_month: prompt + left, max_tokens_per_request: 1_000 });
    return user;
  }

  it('200 with 64 tokens left and no max_tokens: the provider is asked for at most 64', async () => {
    const user = await userWithLeft(64);
    const before = fake.calls.length;
    const res = await chat(user, ask);
    assert.equal(res.status, 200, res.text);
    assert.equal(fake.calls.length, before + 1);
    assert.equal(fake.calls[before].body.max_tokens, 64);
  });

  it('a stream without max_tokens is capped the same way', async () => {
    const user = await userWithLeft(64);
    const before = fake.calls.length;
    const res = await chat(user, { ...ask, stream: true });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.text.endsWith('data: [DONE]\n\n'));
    assert.equal(fake.calls[before].body.max_tokens, 64);
  });

  it('n answers share what is left: 2 answers of at most 32 each', async () => {
    const user = await userWithLeft(64);
    const before = fake.calls.length;
    const res = await chat(user, { ...ask, n: 2 });
    assert.equal(res.status, 200, res.text);
    assert.equal(fake.calls[before].body.max_tokens, 32);
  });

  it('the plan’s maximum still applies when more is left; a client’s own max_tokens is never changed', async () => {
    const user = await userWithLeft(5_000);
    const before = fake.calls.length;
    assert.equal((await chat(user, ask)).status, 200);
    assert.equal(fake.calls[before].body.max_tokens, 1_000);
    assert.equal((await chat(user, { ...ask, max_tokens: 7 })).status, 200);
    assert.equal(fake.calls[before + 1].body.max_tokens, 7);
  });

  it('429 quota_exceeded when the client asks for more than is left, and when nothing is', async () => {
    const user = await userWithLeft(64);
    const before = fake.calls.length;
    const asked = await chat(user, { ...ask, max_tokens: 65 });
    assert.equal(asked.status, 429, asked.text);
    assert.equal(asked.body.error.code, 'quota_exceeded');
    const spent = await userWithLeft(0);
    const none = await chat(spent, ask);
    assert.equal(none.status, 429, none.text);
    assert.equal(fake.calls.length, before, 'no provider was called');
  });
});
