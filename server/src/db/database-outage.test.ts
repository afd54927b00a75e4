import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type TestUser } from '../../test/harness.js';
import { findPostgresBin, startThrowawayPostgres, type ThrowawayPostgres } from '../../test/throwaway-postgres.js';

// A PostgreSQL of this file's own that is stopped, restarted, paused and has its connections
// killed, while the app keeps running in this process (docs/operations.md, "When the database
// goes away"). An unhandled 'error' event or rejection would fail the whole file.
const skip = findPostgresBin() === null ? 'needs PostgreSQL binaries (/usr/lib/postgresql/*/bin)' : false;

let pg: ThrowawayPostgres;
let h: Harness;
let user: TestUser;
before(async () => {
  if (skip) return;
  pg = await startThrowawayPostgres();
  h = await createHarness(
    {
      DATABASE_URL: pg.url,
      // The LISTEN connection of the realtime bus is one of the connections that must come back.
      REALTIME_BROKER: 'postgres',
      REDIS_URL: '',
      // Every request reads the database, so an outage shows at once.
      AUTH_CACHE_TTL: '0',
      DATABASE_CONNECT_TIMEOUT: '1s',
      DATABASE_STATEMENT_TIMEOUT: '1s',
    },
    { databaseUrl: pg.url },
  );
  user = await (await h.tenant()).user();
});
after(async () => {
  if (skip) return;
  await h?.close();
  await pg?.destroy();
});

const me = () => h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken });

/** The requests answered until one is 200 (at most `tries`): what a client retrying would see. */
async function untilServed(tries = 50) {
  const seen: number[] = [];
  for (let i = 0; i < tries; i++) {
    const res = await me();
    seen.push(res.status);
    if (res.status === 200) return seen;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return seen;
}

/** Whether the realtime bus has its LISTEN connection open (it reconnects by itself). */
async function listening(): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const count = await pg.psql("select count(*) from pg_stat_activity where query like 'LISTEN %'").catch(() => '0');
    if (Number(count) > 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** The postmaster and every backend: pausing them all is a database that hangs. */
function clusterPids(): number[] {
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pg.pid())], { encoding: 'utf8' })
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => pid > 0);
  return [pg.pid(), ...children];
}

describe('PostgreSQL going away and coming back', { skip }, () => {
  it('503 database_unavailable with Retry-After while the server is stopped, 200 again once it is back, in the same process', {
    timeout: 60_000,
  }, async () => {
    assert.equal((await me()).status, 200);
    await pg.stop();
    const down = await me();
    assert.equal(down.status, 503, down.text);
    assert.equal(down.body.error.code, 'database_unavailable');
    assert.equal(down.headers['retry-after'], '5');
    const ready = await h.request({ method: 'GET', url: '/readyz' });
    assert.equal(ready.status, 503);
    assert.equal(ready.body.checks.database, 'unreachable');

    await pg.start();
    assert.equal((await untilServed()).at(-1), 200, 'served again without a restart');
    assert.equal((await h.request({ method: 'GET', url: '/readyz' })).status, 200);
    assert.ok(await listening(), 'the realtime bus listens again');
  });

  it('a killed connection (pg_terminate_backend) costs at most a 503 for the requests on it, never the process', {
    timeout: 60_000,
  }, async () => {
    assert.ok(await listening());
    const killed = await pg.psql(
      "select count(pg_terminate_backend(pid)) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
    );
    assert.ok(Number(killed) >= 2, `killed ${killed}: the pool's connections and the LISTEN one`);
    const seen = await untilServed();
    assert.equal(seen.at(-1), 200);
    assert.ok(
      seen.every((status) => status === 200 || status === 503),
      `only 503 before it is served: ${seen}`,
    );
    assert.ok(await listening(), 'the realtime bus listens again');
  });

  it('503 within bounded time while the database hangs (every PostgreSQL process paused), then 200 once it resumes', {
    timeout: 60_000,
  }, async () => {
    assert.equal((await me()).status, 200);
    const pids = clusterPids();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      const ready = await h.request({ method: 'GET', url: '/readyz' });
      assert.equal(ready.status, 503);
      assert.equal(ready.body.checks.database, 'unreachable');
      const hung = await me();
      assert.equal(hung.status, 503, hung.text);
      assert.equal(hung.body.error.code, 'database_unavailable');
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    assert.equal((await untilServed()).at(-1), 200);
    assert.equal((await h.request({ method: 'GET', url: '/readyz' })).status, 200);
  });
});
