import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const plans = (tenant: string, token = h.operator.token) =>
  h.request({ method: 'GET', url: '/api/admin/plans', token, tenant });
const createPlan = (tenant: string, body: Record<string, unknown>, token = h.operator.token) =>
  h.request({ method: 'POST', url: '/api/admin/plans', token, tenant, body });
const patchPlan = (tenant: string, id: string, body: Record<string, unknown>) =>
  h.request({ method: 'PATCH', url: `/api/admin/plans/${id}`, token: h.operator.token, tenant, body });
const assign = (tenant: string, userId: string, plan: string | null, token = h.operator.token) =>
  h.request({ method: 'PUT', url: `/api/admin/users/${userId}/plan`, token, tenant, body: { plan } });

describe('GET /api/admin/plans', () => {
  it("200 a new tenant has the seeds' free, pro and enterprise plans, free by default", async () => {
    const t = await h.tenant();
    const res = await plans(t.id);
    assert.equal(res.status, 200, res.text);
    const byName = Object.fromEntries(res.body.data.map((p: { name: string }) => [p.name, p]));
    assert.deepEqual(Object.keys(byName).sort(), ['enterprise', 'free', 'pro']);
    const limits = (name: string) => {
      const { requests_per_hour, llm_requests_per_hour, max_tokens_per_request, tokens_per_month } = byName[name];
      return [requests_per_hour, llm_requests_per_hour, max_tokens_per_request, tokens_per_month];
    };
    assert.deepEqual(limits('free'), [100, 50, 1_000, 10_000]);
    assert.deepEqual(limits('pro'), [1_000, 500, 4_000, 100_000]);
    assert.deepEqual(limits('enterprise'), [10_000, 5_000, 8_000, 1_000_000]);
    assert.deepEqual(
      res.body.data.filter((p: { default: boolean }) => p.default).map((p: { name: string }) => p.name),
      ['free'],
    );
  });

  it("404 for another tenant's plan, and a tenant admin sees only their own plans", async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const admin2 = await t2.admin();
    const planOf1 = (await plans(t1.id)).body.data[0].id;
    const res = await h.request({ method: 'GET', url: `/api/admin/plans/${planOf1}`, token: admin2.accessToken });
    assert.equal(res.status, 404);
    const own = await plans(t1.id, admin2.accessToken);
    assert.ok(own.body.data.every((p: { id: string }) => p.id !== planOf1));
  });
});

describe('POST /api/admin/plans and PATCH /api/admin/plans/:id', () => {
  it('201 creates a plan (omitted limits are unlimited); 409 for a name in use; 400 names a bad field', async () => {
    const t = await h.tenant();
    const created = await createPlan(t.id, { name: 'team', requests_per_hour: 5_000 });
    assert.equal(created.status, 201, created.text);
    assert.match(created.body.id, /^pln_/);
    assert.equal(created.body.requests_per_hour, 5_000);
    assert.equal(created.body.tokens_per_month, null);
    assert.equal(created.body.default, false);
    assert.equal((await createPlan(t.id, { name: 'team' })).status, 409);
    const bad = await createPlan(t.id, { name: 'Has Spaces', requests_per_hour: -1 });
    assert.equal(bad.status, 400);
    assert.ok(fieldsOf(bad).includes('name') || fieldsOf(bad).includes('requests_per_hour'), bad.text);
  });

  it('200 changes limits, null making one unlimited, and default: true moves the default', async () => {
    const t = await h.tenant();
    const pro = (await plans(t.id)).body.data.find((p: { name: string }) => p.name === 'pro');
    const res = await patchPlan(t.id, pro.id, { tokens_per_month: null, requests_per_hour: 2_000, default: true });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.tokens_per_month, null);
    assert.equal(res.body.requests_per_hour, 2_000);
    const defaults = (await plans(t.id)).body.data.filter((p: { default: boolean }) => p.default);
    assert.deepEqual(
      defaults.map((p: { name: string }) => p.name),
      ['pro'],
    );
    const refuse = await patchPlan(t.id, pro.id, { default: false });
    assert.equal(refuse.status, 400);
    assert.equal(fieldsOf(refuse)[0], 'default');
  });
});

describe('DELETE /api/admin/plans/:id', () => {
  it('409 for the default plan and for a plan with users; 204 otherwise', async () => {
    const t = await h.tenant();
    const all = (await plans(t.id)).body.data;
    const free = all.find((p: { name: string }) => p.name === 'free');
    const pro = all.find((p: { name: string }) => p.name === 'pro');
    const enterprise = all.find((p: { name: string }) => p.name === 'enterprise');
    const del = (id: string) =>
      h.request({ method: 'DELETE', url: `/api/admin/plans/${id}`, token: h.operator.token, tenant: t.id });
    assert.equal((await del(free.id)).status, 409);
    const user = await t.user();
    assert.equal((await assign(t.id, user.id, 'pro')).status, 200);
    const inUse = await del(pro.id);
    assert.equal(inUse.status, 409);
    assert.equal(inUse.body.error.details.users, 1);
    assert.equal((await del(enterprise.id)).status, 204);
    assert.equal((await plans(t.id)).body.data.length, 2);
  });
});

describe('PUT /api/admin/users/:id/plan', () => {
  it("200 moves a user to a plan by name, and null back to the tenant's default; /me shows it", async () => {
    const t = await h.tenant();
    const user = await t.user();
    const me = async () => (await h.request({ method: 'GET', url: '/api/auth/me', token: user.apiKey })).body.plan;
    assert.equal((await me()).name, 'free');
    const res = await assign(t.id, user.id, 'enterprise');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.plan.name, 'enterprise');
    assert.equal((await me()).name, 'enterprise', 'the change shows at once');
    assert.equal((await me()).tokens_per_month, 1_000_000);
    assert.equal((await assign(t.id, user.id, null)).body.plan.name, 'free');
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=user.plan_changed',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.body.data.length, 2);
  });

  it("404 for an unknown plan and for another tenant's user; 403 for a service key", async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const user = await t1.user();
    assert.equal((await assign(t1.id, user.id, 'platinum')).status, 404);
    assert.equal((await assign(t2.id, user.id, 'pro')).status, 404);
    const service = await t1.serviceKey();
    assert.equal((await assign(t1.id, user.id, 'pro', service)).status, 403);
  });
});
