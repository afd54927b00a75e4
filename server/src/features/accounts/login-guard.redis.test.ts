import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { createHarness, type Harness, STRONG_PASSWORD } from '../../../test/harness.js';

// The sign-in and sign-up guards while their Redis goes away: they count in memory, whatever
// RATE_LIMIT_STORE_FAILURE says; a guard that cannot count never lets guesses through unbounded.

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** A Redis of this test's own (no persistence), on a free loopback port. */
async function startRedis(): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let seen = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    seen += chunk.toString('utf8');
  });
  for (let i = 0; i < 200 && !/Ready to accept connections/i.test(seen); i++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${seen}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.match(seen, /Ready to accept connections/i, 'redis-server did not start');
  return { url: `redis://127.0.0.1:${port}`, process: child };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  assert.ok(condition(), what);
}

for (const policy of ['closed', 'open'] as const) {
  describe(`RATE_LIMIT_STORE_FAILURE=${policy}, Redis gone`, () => {
    it('429 after 10 wrong passwords from one address (counted in memory); the owner still signs in; sign-ups still counted', async () => {
      const redis = await startRedis();
      let h: Harness | undefined;
      try {
        h = await createHarness({ REDIS_URL: redis.url, RATE_LIMIT_STORE_FAILURE: policy, SIGNUP_LIMIT_PER_IP: '2' });
        const harness = h;
        await until('redis ready', () => harness.deps.limiters.state() === 'shared');
        const t = await h.tenant();
        const user = await t.user({ password: STRONG_PASSWORD });

        redis.process.kill('SIGTERM');
        await once(redis.process, 'exit');
        await until('redis seen as gone', () => harness.deps.limiters.state() !== 'shared');

        const attacker = '203.0.113.60';
        for (let i = 0; i < 10; i++) {
          const res = await t.login({ email: user.email, password: `wrong guess ${i}` }, { ip: attacker });
          assert.equal(res.status, 401, res.text);
        }
        const blocked = await t.login({ email: user.email, password: user.password }, { ip: attacker });
        assert.equal(blocked.status, 429, blocked.text);
        assert.equal(blocked.body.error.code, 'too_many_attempts');
        const owner = await t.login({ email: user.email, password: user.password }, { ip: '198.51.100.60' });
        assert.equal(owner.status, 200, owner.text);

        const signUp = (i: number) =>
          harness.request({
            method: 'POST',
            url: '/api/auth/register',
            tenant: t.publishableKey,
            ip: '203.0.113.61',
            body: { email: `during-outage-${i}@example.com`, password: STRONG_PASSWORD },
          });
        assert.equal((await signUp(1)).status, 201);
        assert.equal((await signUp(2)).status, 201);
        assert.equal((await signUp(3)).status, 429);
      } finally {
        await h?.close();
        if (redis.process.exitCode === null) redis.process.kill('SIGKILL');
      }
    });
  });
}
