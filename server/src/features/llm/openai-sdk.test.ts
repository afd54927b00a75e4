import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../../test/fake-llm.js';
import { createHarness, type Harness, listen, type TestTenant, type TestUser } from '../../../test/harness.js';
import { countMessageTokens } from './tokens.js';

// The official openai SDK against Gatehouse's own errors, as it is used: over a socket, with its
// default retries (ADR 0014). A limit that will not reset soon must fail at once; one that will, be retried.

let h: Harness;
let fake: FakeLlm;
let baseURL: string;
before(async () => {
  // A stalled provider call ends after a second (502), which frees what it held.
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', LLM_UPSTREAM_TIMEOUT: '1s' });
  fake = await startFakeLlm();
  baseURL = `${await listen(h.app)}/api/llm/v1`;
});
after(async () => {
  await h.close();
  await fake.close();
});

const ask = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'Say hello' }] };
/** The SDK with its defaults (2 retries), and optionally a fetch that watches what it gets. */
const sdk = (user: TestUser, fetch?: typeof globalThis.fetch) => new OpenAI({ baseURL, apiKey: user.apiKey, fetch });

/** A user on a plan with these limits, and hourly request limits high enough to count with. */
async function userOnPlan(t: TestTenant, plan: Record<string, unknown>) {
  const user = await t.user();
  await t.putOnPlan(user.id, { requests_per_hour: 1_000, max_tokens_per_request: 100, ...plan });
  return user;
}

/** Requests Gatehouse received from the user so far (GET /api/usage itself is not counted). */
async function requestsOf(user: TestUser): Promise<number> {
  const usage = await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey });
  const { limit, remaining } = usage.body.limits.requests_per_hour;
  return limit - remaining;
}

async function refusal(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const error = await promise.then(
    () => assert.fail('the call should have been refused'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof OpenAI.APIError, String(error));
  return error;
}

describe('the openai SDK and Gatehouse’s 429s', () => {
  it('a spent budget fails at once: one request, no retries, x-should-retry false and a bounded Retry-After', {
    timeout: 30_000,
  }, async () => {
    const t = await tenantServedBy(h, fake);
    const user = await userOnPlan(t, { tokens_per_month: 5 });
    const error = await refusal(sdk(user).chat.completions.create(ask));
    assert.equal(await requestsOf(user), 1, 'Gatehouse was asked once');
    assert.ok(error instanceof OpenAI.RateLimitError);
    assert.deepEqual([error.code, error.type, error.param], ['quota_exceeded', 'insufficient_quota', null]);
    assert.equal(error.headers?.get('x-should-retry'), 'false');
    const retryAfter = Number(error.headers?.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 86_400, `retry-after ${retryAfter}`);
  });

  it('an hourly LLM limit fails at once too: the hour is not worth waiting for', { timeout: 30_000 }, async () => {
    const t = await tenantServedBy(h, fake);
    const user = await userOnPlan(t, { llm_requests_per_hour: 1 });
    await sdk(user).chat.completions.create(ask);
    const error = await refusal(sdk(user).chat.completions.create(ask));
    assert.deepEqual([error.status, error.code, error.type], [429, 'rate_limited', 'requests']);
    assert.equal(error.headers?.get('x-should-retry'), 'false');
    assert.equal(await requestsOf(user), 2);
  });

  it('a budget held by a call in flight is retried when that call ends, and answered', {
    timeout: 30_000,
  }, async () => {
    const t = await tenantServedBy(h, fake);
    const prompt = await countMessageTokens(ask.messages);
    const user = await userOnPlan(t, { tokens_per_month: prompt + 100 });
    // A call that holds the whole budget until its provider times out.
    fake.next('stall');
    const sent = fake.calls.length;
    const inFlight = h.request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body: ask });
    while (fake.calls.length === sent) await new Promise((resolve) => setTimeout(resolve, 5));
    const refusals: { headers: Headers; body: { error: { code: string } } }[] = [];
    const watching: typeof globalThis.fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (response.status === 429) {
        // Read whole, so the SDK's own copy can still be cancelled (a tee waits for both).
        refusals.push({ headers: response.headers, body: await response.clone().json() });
        await inFlight; // the SDK waits as told; by then the hold has ended
      }
      return response;
    };
    const completion = await sdk(user, watching).chat.completions.create(ask);
    assert.equal(completion.choices[0].message.content, 'Hello from the fake provider');
    assert.equal(refusals.length, 1);
    const [refused] = refusals;
    assert.equal(refused.headers.get('x-should-retry'), 'true');
    assert.equal(refused.headers.get('retry-after-ms'), '2000');
    assert.equal(refused.body.error.code, 'quota_exceeded');
    assert.equal((await inFlight).status, 502);
    assert.equal(await requestsOf(user), 3, 'the call in flight, the refusal and the retry');
  });
});

describe('Gatehouse’s errors in OpenAI’s shape on /api/llm/v1', () => {
  it('400 names the field in param; 404 and 401 carry OpenAI’s type; Gatehouse’s code and requestId stay', async () => {
    const t = await tenantServedBy(h, fake);
    const user = await t.user();
    const invalid = await refusal(sdk(user).chat.completions.create({ ...ask, max_tokens: 0 }));
    assert.ok(invalid instanceof OpenAI.BadRequestError);
    assert.deepEqual(
      [invalid.code, invalid.type, invalid.param],
      ['validation_failed', 'invalid_request_error', 'max_tokens'],
    );
    assert.match((invalid.error as { requestId?: string }).requestId ?? '', /^req_/);
    const unknown = await refusal(sdk(user).chat.completions.create({ ...ask, model: 'no-such-model' }));
    assert.ok(unknown instanceof OpenAI.NotFoundError);
    assert.deepEqual([unknown.code, unknown.type, unknown.param], ['not_found', 'invalid_request_error', null]);
    const stranger = { ...user, apiKey: 'gk_not_a_key' };
    for (const call of [() => sdk(stranger).chat.completions.create(ask), () => sdk(stranger).models.list()]) {
      const denied = await refusal(call());
      assert.ok(denied instanceof OpenAI.AuthenticationError);
      assert.equal(denied.type, 'authentication_error');
      assert.equal(typeof denied.code, 'string');
    }
  });
});
