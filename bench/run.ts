// `npm run bench`: starts Gatehouse (production mode, SQLite) and a bare Fastify route, loads
// both from separate client processes on 127.0.0.1, and prints measured numbers next to the
// targets. It never asserts: PASS/FAIL only says whether a number met its target in this run.
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BoundResult, BoundSpec } from './argon2-bound.js';
import { createFixtures, startGatehouse } from './lib/gatehouse.js';
import {
  childPids,
  freePort,
  killAllNow,
  probe,
  rssMiB,
  runJson,
  startNode,
  stopChild,
  waitForOk,
} from './lib/procs.js';
import { formatReport, type Results, type Scenario } from './lib/report.js';
import type { LoadResult, LoadSpec } from './load.js';
import type { OverloadResult, OverloadSpec } from './overload.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, '.bench');
const cores = availableParallelism();

// One setting for every throughput scenario, bare route included, so the ratios compare like with like.
const CONNECTIONS = 50;
const WARMUP_S = 2;
const MEASURE_S = 8;
const IDLE_S = 5;
// Server defaults: HASH_CONCURRENCY = cores hashing at once, HASH_QUEUE_MAX = cores * 8 waiting.
const ADMITTED = cores + cores * 8;
// Sign-in throughput: enough to keep every hashing slot busy, well under what is admitted.
const LOGIN_CONNECTIONS = cores * 4;
const OVERLOAD_CONNECTIONS = ADMITTED * 10;
const OVERLOAD_S = 8;
const REQUEST_TIMEOUT_MS = 10_000;
// The server's defaults (OWASP): argon2id, 19 MiB, 2 passes, 1 lane.
const ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };
const TARGET = { jwt: 0.5, apiKey: 0.4, verify: 0.4, login: 0.9, admittedP99Ms: 2000, rejectedP99Ms: 50, rssMB: 120 };

const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
let cleaned = false;
/** Synchronous, so it also runs from 'exit' and signal handlers: SIGKILL live children by pid, drop the data. */
function cleanUp(): void {
  if (cleaned) return;
  cleaned = true;
  killAllNow();
  rmSync(dataDir, { recursive: true, force: true });
}
process.on('exit', cleanUp);
for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(name, () => {
    process.stderr.write(`\n${name}: stopping every child process\n`);
    cleanUp();
    process.exit(130);
  });
}
setTimeout(() => {
  process.stderr.write('bench: still running after 6 minutes, giving up\n');
  cleanUp();
  process.exit(1);
}, 360_000).unref();

const say = (text: string) => process.stderr.write(`${text}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function load(name: string, spec: Omit<LoadSpec, 'warmupSeconds' | 'seconds'>): Promise<LoadResult> {
  say(`  ${name}: ${spec.connections} connections, ${WARMUP_S} s warmup + ${MEASURE_S} s`);
  const full: LoadSpec = { ...spec, warmupSeconds: WARMUP_S, seconds: MEASURE_S };
  return runJson<LoadResult>(join(root, 'bench/load.ts'), full, (WARMUP_S + MEASURE_S) * 1000 + 30_000);
}

async function measure(): Promise<Results> {
  const date = new Date().toISOString();
  const machine = { cores, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, platform: process.platform };
  say(`Gatehouse bench, ${date}: ${cores} cores (${machine.cpu}), node ${machine.node}`);
  say(`Gatehouse: NODE_ENV=production, SQLite in ${dataDir}, LOG_LEVEL=warn (its output: .bench/server.log)`);

  const serverLog = createWriteStream(join(outDir, 'server.log'));
  const barePort = await freePort();
  const bare = startNode(join(root, 'bench/bare.ts'), { env: { ...process.env, PORT: String(barePort) } });
  const bareUrl = `http://127.0.0.1:${barePort}/`;
  const [gatehouse] = await Promise.all([startGatehouse(root, dataDir, serverLog), waitForOk(bareUrl, bare, 30_000)]);
  const base = gatehouse.baseUrl;
  const serverPid = gatehouse.child.pid!;

  say(`idle ${IDLE_S} s, then RSS`);
  await sleep(IDLE_S * 1000);
  const idleMiB = rssMiB(serverPid);
  const idleMB = idleMiB === null ? null : (idleMiB * 1024 * 1024) / 1e6;
  const helpersMiB = childPids(serverPid).reduce((sum, pid) => sum + (rssMiB(pid) ?? 0), 0);
  const bareIdleMiB = rssMiB(bare.pid!);

  const f = await createFixtures(base, await gatehouse.setupToken);
  const json = { 'content-type': 'application/json' };
  const readyz: Results['readyz'] = [];
  const bareRuns: LoadResult[] = [];
  const bareRun = async () => {
    bareRuns.push(await load('bare GET /', { url: bareUrl, method: 'GET', connections: CONNECTIONS }));
  };
  const gatehouseRun = async (name: string, spec: Omit<LoadSpec, 'warmupSeconds' | 'seconds'>) => {
    const result = await load(name, spec);
    readyz.push({ after: name, status: await probe(`${base}/readyz`, 3_000) });
    return result;
  };
  const get = (path: string, token: string) => ({
    url: `${base}${path}`,
    method: 'GET' as const,
    headers: { authorization: `Bearer ${token}` },
    connections: CONNECTIONS,
  });
  const cases = [
    { name: 'GET /api/auth/me, access JWT', target: TARGET.jwt, spec: get('/api/auth/me', f.accessToken) },
    { name: 'GET /api/auth/me, API key', target: TARGET.apiKey, spec: get('/api/auth/me', f.apiKey) },
    {
      name: 'POST /api/keys/verify, service key',
      target: TARGET.verify,
      spec: {
        url: `${base}/api/keys/verify`,
        method: 'POST' as const,
        headers: { ...json, authorization: `Bearer ${f.serviceKey}` },
        body: JSON.stringify({ key: f.apiKey }),
        connections: CONNECTIONS,
      },
    },
  ];

  say('throughput (each client is its own process; bare runs interleaved):');
  const measured: { name: string; target: number; result: LoadResult }[] = [];
  for (const c of cases) {
    await bareRun();
    measured.push({ ...c, result: await gatehouseRun(c.name, c.spec) });
  }
  await bareRun();
  const bareRps = mean(bareRuns.map((r) => r.rps));
  const throughput: Scenario[] = measured.map(({ name, target, result }) => {
    const ratio = result.rps / bareRps;
    return { ...result, name, ratio, target: `>= ${target}x bare`, met: ratio >= target };
  });

  // The bound is measured before and after the login run (the machine is noisy) and averaged.
  const boundRun = () => {
    say(`  argon2id bound: verify ${cores} at once, 1 s warmup + 5 s`);
    const spec: BoundSpec = { ...ARGON2, concurrency: cores, warmupSeconds: 1, seconds: 5 };
    return runJson<BoundResult>(join(root, 'bench/argon2-bound.ts'), spec, 60_000);
  };
  say('sign-in:');
  const boundRuns = [await boundRun()];
  const loginBody = JSON.stringify({ email: f.email, password: f.password });
  const login = await gatehouseRun('POST /api/auth/login', {
    url: `${base}/api/auth/login`,
    method: 'POST',
    headers: json,
    body: loginBody,
    connections: LOGIN_CONNECTIONS,
  });
  boundRuns.push(await boundRun());
  const bound = { verifiesPerSecond: mean(boundRuns.map((b) => b.verifiesPerSecond)), runs: boundRuns };
  const loginRatio = login.rps / bound.verifiesPerSecond;
  const loginScenario: Scenario = {
    ...login,
    name: `POST /api/auth/login (${LOGIN_CONNECTIONS} conn.)`,
    ratio: loginRatio,
    target: `>= ${TARGET.login}x bound`,
    met: loginRatio >= TARGET.login,
  };

  say(
    `overload: login of ${f.crowd.length} accounts from ${OVERLOAD_CONNECTIONS} connections (10x the ${ADMITTED} admitted) for ${OVERLOAD_S} s`,
  );
  const overload = await runJson<OverloadResult>(
    join(root, 'bench/overload.ts'),
    {
      url: `${base}/api/auth/login`,
      bodies: f.crowd.map((email) => JSON.stringify({ email, password: f.password })),
      connections: OVERLOAD_CONNECTIONS,
      seconds: OVERLOAD_S,
      timeoutMs: REQUEST_TIMEOUT_MS,
    } satisfies OverloadSpec,
    (OVERLOAD_S + 30) * 1000 + REQUEST_TIMEOUT_MS,
  );
  readyz.push({ after: 'overload', status: await probe(`${base}/readyz`, 3_000) });
  const afterLoadMiB = rssMiB(serverPid);

  const [gatehouseStop] = await Promise.all([stopChild(gatehouse.child), stopChild(bare)]);
  serverLog.end();

  return {
    date,
    machine,
    settings: {
      connections: CONNECTIONS,
      warmupSeconds: WARMUP_S,
      measureSeconds: MEASURE_S,
      loginConnections: LOGIN_CONNECTIONS,
      admitted: ADMITTED,
      overloadConnections: OVERLOAD_CONNECTIONS,
      overloadAccounts: f.crowd.length,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      idleSeconds: IDLE_S,
      argon2: ARGON2,
      server: 'Gatehouse, NODE_ENV=production, SQLite, logs at warn, defaults otherwise',
    },
    bare: {
      meanRps: bareRps,
      meanP50: mean(bareRuns.map((r) => r.p50)),
      meanP99: mean(bareRuns.map((r) => r.p99)),
      runs: bareRuns,
    },
    throughput,
    login: loginScenario,
    argon2Bound: { ...bound, concurrency: cores },
    overload: {
      ...overload,
      targets: { admittedP99Ms: TARGET.admittedP99Ms, rejectedP99Ms: TARGET.rejectedP99Ms },
      met: {
        admittedP99: overload.admitted.p99 !== null && overload.admitted.p99 < TARGET.admittedP99Ms,
        rejectedP99: overload.rejected.p99 === null ? null : overload.rejected.p99 < TARGET.rejectedP99Ms,
        timeouts: overload.timeouts === 0,
      },
    },
    rss: {
      idleMiB,
      idleMB,
      targetMB: TARGET.rssMB,
      met: idleMB !== null && idleMB < TARGET.rssMB,
      helpersMiB,
      bareIdleMiB,
      afterLoadMiB,
    },
    readyz,
    gatehouseStop,
  };
}

mkdirSync(outDir, { recursive: true });
measure()
  .then((results) => {
    writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`${formatReport(results)}\n`);
  })
  .catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(cleanUp);
