import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../../test/fake-llm.js';
import { createHarness, type Harness, type TestTenant, type TestUser } from '../../../test/harness.js';
import { transaction } from '../../db/index.js';
import { countMessageTokens } from '../llm/tokens.js';
import { addToBudget, closeReservation, findExpiredHolds } from './budget.repo.js';
import { type BudgetOwner, expireHolds, expireReservations, reserveTokens } from './budget.service.js';
import { holdTokens, LEASE_TTL_MS } from './budget-leases.js';
import { flushUsage } from './usage.service.js';

const pg = Boolean(process.env.TEST_DATABASE_URL);

let h: Harness;
let fake: FakeLlm;
before(async () => {
  // Stalled calls give up after a second; the breaker stays closed through the stalls.
  h = await createHarness({
    OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8',
    LLM_UPSTREAM_TIMEOUT: '1s',
    LLM_BREAKER_FAILURES: '1000',
  });
  fake = await startFakeLlm();
});
after(async () => {
  await h.close();
  await fake.close();
});

const ask = { model: 'gpt-test', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 1_000 };
/** What one call of `ask` holds: its prompt, counted, and max_tokens. */
const holdOf = async () => (await countMessageTokens(ask.messages)) + ask.max_tokens;

const tenantWithProvider = () => tenantServedBy(h, fake);

const complete = (user: TestUser, request = h.request) =>
  request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body: ask });
const usageOf = async (user: TestUser, request = h.request) =>
  (await request({ method: 'GET', url: '/api/usage', token: user.apiKey })).body;

/** The user's budget row and lease rows as stored. */
async function stored(user: TestUser, t: TestTenant) {
  const db = h.deps.db.kysely;
  const budget = await db
    .selectFrom('token_budgets')
    .select(['tokens_used', 'tokens_reserved'])
    .where('tenant_id', '=', t.id)
    .where('user_id', '=', user.id)
    .executeTakeFirstOrThrow();
  const leases = await db
    .selectFrom('token_reservations')
    .select(['id', 'tokens', 'status'])
    .where('tenant_id', '=', t.id)
    .where('user_id', '=', user.id)
    .where('id', 'like', 'lse_%')
    .orderBy('id')
    .execute();
  return { budget, leases };
}

describe('budget leases (the LLM gateway’s holds and charges)', () => {
  it('a call holds from a slice this instance leases: the slice is stored as reserved, the user sees only the call', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    const res = await complete(user);
    assert.equal(res.status, 200, res.text);
    const usage = await usageOf(user); // flushes this instance's charges
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved, usage.tokens_remaining], [18, 0, 10_000 - 18]);
    const { budget, leases } = await stored(user, t);
    assert.equal(leases.length, 1);
    assert.equal(leases[0].status, 'held');
    assert.ok(leases[0].tokens > 0, 'the slice left after the charge');
    assert.equal(budget.tokens_used, 18, 'the charge is written');
    assert.equal(budget.tokens_reserved, leases[0].tokens, 'the slice is all that is reserved');
    assert.equal(res.headers['x-ratelimit-remaining-tokens'], String(10_000 - 18));
  });

  it('an idle slice is given back: the lease row is released and nothing stays reserved', async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    h.clockFor(ctx)(6_000);
    await usageOf(user); // the flush that finds the lease idle
    const { budget, leases } = await stored(user, t);
    assert.deepEqual(
      leases.map((l) => l.status),
      ['released'],
    );
    assert.deepEqual([budget.tokens_used, budget.tokens_reserved], [18, 0]);
    // The next call leases anew.
    assert.equal((await complete(user)).status, 200);
    assert.equal((await usageOf(user)).tokens_used, 36);
    assert.equal((await stored(user, t)).leases.length, 2);
  });

  it('a crashed instance’s slice is charged in full when its lease expires: charges it never wrote are not spent again', async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    await usageOf(user); // written
    assert.equal((await complete(user)).status, 200); // charged in memory only
    // The process dies: its memory is gone, its lease row stays held.
    h.deps.budgetLeases.leases.clear();
    const before = await stored(user, t);
    const slice = before.leases[0].tokens;
    assert.ok(slice >= 18, 'the slice covers the charge that was never written');
    h.clockFor(ctx)(LEASE_TTL_MS + 1_000);
    await expireReservations(h.deps);
    const after = await stored(user, t);
    assert.deepEqual(
      after.leases.map((l) => l.status),
      ['expired'],
    );
    assert.deepEqual(
      [after.budget.tokens_used, after.budget.tokens_reserved],
      [18 + slice, 0],
      'the slice counts as used: what the lost call used is in it, the rest is lost with the instance',
    );
    assert.equal((await complete(user)).status, 200, 'a new lease is taken');
  });

  it('an instance whose lease expired under it (a stall) charges nothing twice: what the sweeper charged covers its calls', async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    await usageOf(user); // written
    assert.equal((await complete(user)).status, 200); // charged in memory only
    const slice = (await stored(user, t)).leases[0].tokens;
    // This instance stops renewing for longer than the lease lives; the sweeper takes the slice.
    h.clockFor(ctx)(LEASE_TTL_MS + 1_000);
    await expireReservations(h.deps);
    assert.equal((await stored(user, t)).budget.tokens_used, 18 + slice);
    // The stalled instance comes back: its unwritten charge is in what the sweeper charged.
    let usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved], [18 + slice, 0]);
    // A later call uses up the rest of what was charged for the lost slice first.
    assert.equal((await complete(user)).status, 200);
    usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.totals.llm_requests], [18 + slice, 3]);
    assert.equal((await stored(user, t)).budget.tokens_used, 18 + slice, 'the database agrees');
  });

  it('holds never pass the budget: 30 concurrent calls against room for exactly 3 reach the provider 3 times', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    const hold = await holdOf();
    await t.putOnPlan(user.id, { tokens_per_month: 3 * hold + hold - 1, max_tokens_per_request: 1_000 });
    const before = fake.calls.length;
    fake.next(...Array.from({ length: 30 }, () => 'stall' as const));
    const results = await Promise.all(Array.from({ length: 30 }, () => complete(user)));
    fake.reset(); // nothing left queued for other tests
    const statuses = results.map((r) => r.status).sort((a, b) => a - b);
    assert.equal(fake.calls.length - before, 3, 'exactly the calls that fit were sent');
    assert.deepEqual(statuses, [...Array(27).fill(429), ...Array(3).fill(502)], 'the stalled ones time out');
    const usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved], [0, 0]);
  });

  it('a smaller budget applies at once: the slice shrinks to it, whatever this instance held', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200); // a slice of the free plan's 10,000
    const hold = await holdOf();
    await t.putOnPlan(user.id, { tokens_per_month: 18 + 2 * hold + 5, max_tokens_per_request: 1_000 });
    const before = fake.calls.length;
    fake.next('stall', 'stall', 'stall', 'stall');
    const results = await Promise.all(Array.from({ length: 4 }, () => complete(user)));
    fake.reset();
    assert.equal(fake.calls.length - before, 2, 'two fit the new budget');
    assert.deepEqual(
      results.map((r) => r.status).sort((a, b) => a - b),
      [429, 429, 502, 502],
    );
    await usageOf(user);
    const { budget } = await stored(user, t);
    assert.ok(budget.tokens_used + budget.tokens_reserved <= 18 + 2 * hold + 5, 'the database never holds more either');
  });

  it('a call that uses more than it held is charged in full, and the calls still in flight stay covered', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    const hold = await holdOf();
    const api = await t.serviceKey();
    // One call in flight holds `hold`; another holds a few tokens and is charged 4,500, more than
    // the rest of this instance's slice.
    fake.next('stall');
    const sent = fake.calls.length;
    const stalled = complete(user);
    while (fake.calls.length === sent) await new Promise((r) => setTimeout(r, 5));
    fake.usage.prompt_tokens = 4_490;
    fake.usage.completion_tokens = 10;
    try {
      const small = await h.request({
        method: 'POST',
        url: '/api/llm/v1/chat/completions',
        token: user.apiKey,
        body: { ...ask, max_tokens: 5 },
      });
      assert.equal(small.status, 200, small.text);
    } finally {
      fake.usage.prompt_tokens = 11;
      fake.usage.completion_tokens = 7;
    }
    const usage = await usageOf(user); // flushed, the stalled call still in flight
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved], [4_500, hold]);
    const { budget } = await stored(user, t);
    assert.ok(budget.tokens_reserved >= hold, 'the stored slice still covers the call in flight');
    // What is left for anyone else is what is really left: 10,000 - 4,500 - the call in flight.
    const direct = await h.request({
      method: 'POST',
      url: '/api/admin/usage/reservations',
      token: api,
      body: { user_id: user.id, tokens: 10_000 - 4_500 - hold + 1 },
    });
    assert.equal(direct.status, 429, direct.text);
    assert.equal((await stalled).status, 502);
  });

  it('a lease in use is renewed and outlives its first minute; the sweeper never takes it', async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    const move = h.clockFor(ctx);
    assert.equal((await complete(user)).status, 200);
    for (let i = 0; i < 3; i++) {
      move(40_000);
      assert.equal((await complete(user)).status, 200);
      await usageOf(user); // the flush renews the row
      await expireReservations(h.deps);
    }
    const { budget, leases } = await stored(user, t);
    assert.deepEqual(
      leases.map((l) => l.status),
      ['held'],
      'one lease, two minutes on',
    );
    assert.deepEqual([budget.tokens_used, budget.tokens_reserved], [4 * 18, leases[0].tokens]);
  });

  it('the sweeper does not free a lease renewed after it was listed as expired', async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    await usageOf(user);
    h.clockFor(ctx)(LEASE_TTL_MS + 1_000);
    const listed = await findExpiredHolds(h.deps.db.kysely, h.clock.now(), { tenantId: t.id, userId: user.id });
    assert.equal(listed.length, 1, 'the lease is listed as expired');
    // Its owner calls before the sweeper gets to it: a new slice is taken, the old one left to the sweeper.
    assert.equal((await complete(user)).status, 200);
    await transaction(h.deps.db.kysely, (trx) => expireHolds(trx, h.deps, listed));
    await usageOf(user);
    const { budget, leases } = await stored(user, t);
    const held = leases.filter((l) => l.status === 'held');
    assert.equal(held.length, 1);
    assert.equal(budget.tokens_reserved, held[0].tokens, 'only the live slice is reserved, and it is');
    assert.equal(budget.tokens_used, 36);
  });

  it('a plan without a limit is charged exactly; moving to a limited plan holds again', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    await t.putOnPlan(user.id, { max_tokens_per_request: 1_000 });
    for (let i = 0; i < 3; i++) assert.equal((await complete(user)).status, 200);
    const usage = await usageOf(user);
    assert.deepEqual([usage.monthly_limit, usage.tokens_used, usage.tokens_reserved], [null, 54, 0]);
    assert.equal((await stored(user, t)).leases.length, 0, 'nothing to hold, no lease row');
    await t.putOnPlan(user.id, { tokens_per_month: 100, max_tokens_per_request: 1_000 });
    const refused = await complete(user);
    assert.equal(refused.status, 429, refused.text);
  });

  it('a flush that fails keeps the charges, and the next writes them once with their records', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    await usageOf(user);
    assert.equal((await complete(user)).status, 200); // charged in memory
    const db = h.deps.db.kysely;
    // The database refuses usage events for a moment: the flush's one transaction fails whole.
    if (pg) {
      await sql`create function refuse_usage() returns trigger language plpgsql as $$ begin raise exception 'refused'; end $$`.execute(
        db,
      );
      await sql`create trigger refuse_usage before insert on usage_events for each row execute function refuse_usage()`.execute(
        db,
      );
    } else {
      await sql`create trigger refuse_usage before insert on usage_events begin select raise(abort, 'refused'); end`.execute(
        db,
      );
    }
    try {
      await assert.rejects(flushUsage(h.deps), /refused/);
      assert.equal((await stored(user, t)).budget.tokens_used, 18, 'nothing of it was written');
    } finally {
      await sql`drop trigger refuse_usage${sql.raw(pg ? ' on usage_events' : '')}`.execute(db);
      if (pg) await sql`drop function refuse_usage()`.execute(db);
    }
    const usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved, usage.totals.llm_requests], [36, 0, 2]);
    const { budget, leases } = await stored(user, t);
    assert.equal(budget.tokens_used, 36, 'written once');
    assert.equal(budget.tokens_reserved, leases[0].tokens);
  });

  it('a lease is no reservation of the API: settling its id answers 404', async () => {
    const t = await tenantWithProvider();
    const user = await t.user();
    assert.equal((await complete(user)).status, 200);
    const [lease] = (await stored(user, t)).leases;
    const res = await h.request({
      method: 'POST',
      url: `/api/admin/usage/reservations/${lease.id}/settle`,
      token: await t.serviceKey(),
      body: { prompt_tokens: 1, completion_tokens: 1 },
    });
    assert.equal(res.status, 404, res.text);
  });

  it('a slice growing while the sweeper frees an expired hold of the same user waits, never deadlocks (PostgreSQL)', {
    skip: !pg && 'needs TEST_DATABASE_URL',
  }, async (ctx) => {
    const t = await tenantWithProvider();
    const user = await t.user();
    const owner: BudgetOwner = {
      tenantId: t.id,
      userId: user.id,
      apiKeyId: null,
      limits: {
        plan: 'free',
        requestsPerHour: null,
        llmRequestsPerHour: null,
        maxTokensPerRequest: null,
        maxPromptTokensPerRequest: null,
        tokenBudget: 1_000,
        tokenPeriod: 'month',
        allowedModels: null,
        key: null,
      },
    };
    const { reservation } = await reserveTokens(h.deps, owner, 900, { ttlMs: 1_000 });
    h.clockFor(ctx)(5_000);
    // The sweeper's order: the hold's row, then (later) the budget row.
    let proceed!: () => void;
    const go = new Promise<void>((resolve) => {
      proceed = resolve;
    });
    const sweeper = h.deps.db.kysely.transaction().execute(async (trx) => {
      const now = h.deps.clock.now();
      const closed = await closeReservation(trx, t.id, reservation.id, { status: 'expired', charged: null, now });
      assert.ok(closed);
      await go;
      const key = { tenantId: t.id, userId: user.id, periodStart: closed.period_start };
      await addToBudget(trx, key, { reserved: -closed.tokens, used: 0, limit: null, now });
    });
    // A call that needs the expired hold's tokens grows the slice meanwhile.
    const grow = Promise.resolve(holdTokens(h.deps, owner, 500));
    await new Promise((resolve) => setTimeout(resolve, 300));
    proceed();
    const [swept, grown] = await Promise.allSettled([sweeper, grow]);
    assert.equal(swept.status, 'fulfilled', String((swept as PromiseRejectedResult).reason));
    assert.equal(grown.status, 'fulfilled', String((grown as PromiseRejectedResult).reason));
  });

  it('two instances sharing PostgreSQL never hold more than the budget, and charge exactly', {
    skip: !pg && 'needs TEST_DATABASE_URL',
  }, async () => {
    const second = await h.secondInstance();
    const t = await tenantWithProvider();
    const user = await t.user();
    const hold = await holdOf();
    await t.putOnPlan(user.id, { tokens_per_month: 6 * hold, max_tokens_per_request: 1_000 });
    const requests = [h.request, second.request];
    const before = fake.calls.length;
    fake.next(...Array.from({ length: 40 }, () => 'stall' as const));
    const stalled = await Promise.all(Array.from({ length: 40 }, (_, i) => complete(user, requests[i % 2])));
    fake.reset();
    const sent = fake.calls.length - before;
    assert.ok(sent >= 4 && sent <= 6, `${sent} calls held at once: never more than fit (a slice's rest may idle)`);
    assert.equal(stalled.filter((r) => r.status === 502).length, sent);

    // Then calls that finish: both instances' charges add up, once each has flushed.
    const answered = await Promise.all(Array.from({ length: 20 }, (_, i) => complete(user, requests[i % 2])));
    const ok = answered.filter((r) => r.status === 200).length;
    assert.ok(ok >= 6, `${ok} answered`);
    await usageOf(user, second.request);
    const usage = await usageOf(user);
    assert.equal(usage.tokens_used, ok * 18);
    const { budget } = await stored(user, t);
    assert.equal(budget.tokens_used, ok * 18);
  });

  it('an instance killed with SIGKILL leaves nothing to spend twice: the provider never serves more than the budget (PostgreSQL)', {
    skip: !pg && 'needs TEST_DATABASE_URL',
  }, async (ctx) => {
    const doomed = await h.spawnInstance();
    const t = await tenantWithProvider();
    const user = await t.user();
    const budget = 2_000;
    await t.putOnPlan(user.id, { tokens_per_month: budget, max_tokens_per_request: 10 });
    const small = { ...ask, max_tokens: 10 };
    const before = fake.calls.length;
    // Every call the provider answers serves its usage: 18 tokens.
    const served = () => (fake.calls.length - before) * (fake.usage.prompt_tokens + fake.usage.completion_tokens);

    // The doomed instance answers calls and charges them in memory (it writes them every second)…
    const answered = await Promise.all(
      Array.from({ length: 30 }, () =>
        fetch(`${doomed.url}/api/llm/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${user.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(small),
        }),
      ),
    );
    assert.deepEqual(
      answered.map((r) => r.status),
      Array(30).fill(200),
    );
    // …and is killed: no final flush, its slice never given back.
    await doomed.kill();
    h.clockFor(ctx)(LEASE_TTL_MS + 1_000);
    await expireReservations(h.deps);

    // The surviving instance serves the same user until the budget says no.
    let last = 200;
    for (let i = 0; i < 200 && last === 200; i++) {
      last = (await h.request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body: small }))
        .status;
    }
    assert.equal(last, 429, 'the budget ran out');
    ctx.diagnostic(`the provider served ${served()} tokens against a budget of ${budget}`);
    assert.ok(served() <= budget, `the provider served ${served()} tokens against a budget of ${budget}`);
  });
});
