// `npm run bench`: starts Gatehouse (production mode, SQLite) and a bare Fastify route, loads
// both from separate client processes on 127.0.0.1, and prints measured numbers next to the
// targets. Then, when they answer, a Gatehouse with its rate-limit counters in Redis and one on
// PostgreSQL (usage summary over a month of usage), in lib/store-scenarios.ts; then the LLM
// gateway against a fake upstream, directly and through a Gatehouse of its own, in
// lib/llm-scenarios.ts. It never asserts: PASS/FAIL only says whether a number met its target in
// this run.
//
// `BENCH_ONLY=webhooks` runs the webhook outbox scenario alone (about 15 s).
// `BENCH_ONLY=realtime` runs the realtime scenario (10,000 WebSockets) alone (about 30 s).
// `BENCH_ONLY=llm npm run bench` runs the LLM gateway scenarios alone (70-90 s on 2 cores;
// results in .bench/results-llm.json, .bench/results.json is left as it was).
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BoundResult, BoundSpec } from './argon2-bound.js';
import { createFixtures, startGatehouse } from './lib/gatehouse.js';
import { formatLlmOnly, type LlmOnlyResults } from './lib/llm-report.js';
import { type LlmSettings, type LlmTargets, llmGateway } from './lib/llm-scenarios.js';
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
import {
  formatRealtime,
  type RealtimeSettings,
  type RealtimeTargets,
  realtimeFanOut,
} from './lib/realtime-scenarios.js';
import { formatReport, type Results, type Scenario } from './lib/report.js';
import {
  compareLimits,
  LIMITED,
  limitsOnRedis,
  type StoreContext,
  UNLIMITED,
  usageOnPostgres,
} from './lib/store-scenarios.js';
import { shown } from './lib/stores.js';
import { type BenchDatabase, dropBenchDatabaseSync } from './lib/usage-db.js';
import { formatWebhooks, webhookOutbox } from './lib/webhook-scenarios.js';
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
const TARGET = {
  jwt: 0.5,
  apiKey: 0.4,
  verify: 0.4,
  login: 0.9,
  admittedP99Ms: 2000,
  rejectedP99Ms: 50,
  rssMB: 120,
  // Issue 3: rps with limits counted over rps without, per counter store; usage summary latency.
  limitsMemory: 0.8,
  limitsRedis: 0.6,
  usageP99Ms: 50,
  // Issue 6: deliveries per second from a backlog to a local receiver.
  webhooksPerSecond: 500,
};
// Issue 6: 10,000 sockets on one instance under 1 GB; a broadcast reaches every socket within 100 ms at p99 (seed 004).
const REALTIME_TARGET: RealtimeTargets = { rssMB: 1000, p99Ms: 100 };
const REALTIME_SETTINGS: RealtimeSettings = { connections: 10_000, clientProcesses: 2, broadcasts: 20, gapMs: 300 };
/** Events queued for the webhook outbox scenario. */
const WEBHOOK_EVENTS = 3_000;
// Issue 4, the LLM gateway against a fake upstream: req/s through Gatehouse over direct
// (non-streaming), p50 added at one request in flight, p50 time to first byte added (streaming),
// and chunks forwarded as they arrive (median gap at least 0.8x the upstream's, at most 1% bunched).
const LLM_TARGET: LlmTargets = { rpsRatio: 0.5, addedP50Ms: 0.5, addedTtfbMs: 1, gapShare: 0.8, bunchedShare: 0.01 };
const LLM_SETTINGS: LlmSettings = {
  chunks: 10,
  intervalMs: 20,
  latency: { warmup: 300, count: 2000 },
  ttfb: { warmup: 50, count: 500 },
  // Each paced stream takes chunks x intervalMs (200 ms).
  paced: { warmup: 5, count: 50 },
};
// Optional stores (lib/store-scenarios.ts): used when they answer (2 s to connect and answer),
// skipped with the reason otherwise.
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// The usage summary reads its month of usage one request at a time.
const USAGE_WARMUP = 20;
const USAGE_REQUESTS = 200;

/** Every Gatehouse gets a data directory of its own (SQLite file, or nothing much on PostgreSQL). */
const dataDirs: string[] = [];
function newDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  dataDirs.push(dir);
  return dir;
}
const dataDir = newDataDir();
/** The PostgreSQL database of the usage scenario while it may exist: dropped on every way out. */
let benchDb: BenchDatabase | null = null;
let cleaned = false;
/**
 * Synchronous, so it also runs from 'exit' and signal handlers: SIGKILL live children by pid
 * (Gatehouse first, so nothing holds the database), drop the bench database, drop the data.
 */
function cleanUp(): void {
  if (cleaned) return;
  cleaned = true;
  killAllNow();
  if (benchDb) {
    const failure = dropBenchDatabaseSync(benchDb);
    if (failure) process.stderr.write(`bench: could not drop database ${benchDb.name}: ${failure}\n`);
    benchDb = null;
  }
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanUp);
for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(name, () => {
    process.stderr.write(`\n${name}: stopping every child process\n`);
    cleanUp();
    process.exit(130);
  });
}
// About 4 minutes on 2 cores with Redis and PostgreSQL there (3 without); a run that hangs is stopped.
setTimeout(() => {
  process.stderr.write('bench: still running after 9 minutes, giving up\n');
  cleanUp();
  process.exit(1);
}, 540_000).unref();

const say = (text: string) => process.stderr.write(`${text}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function load(name: string, spec: Omit<LoadSpec, 'warmupSeconds' | 'seconds'>): Promise<LoadResult> {
  say(`  ${name}: ${spec.connections} connections, ${WARMUP_S} s warmup + ${MEASURE_S} s`);
  const full: LoadSpec = { ...spec, warmupSeconds: WARMUP_S, seconds: MEASURE_S };
  return runJson<LoadResult>(join(root, 'bench/load.ts'), full, (WARMUP_S + MEASURE_S) * 1000 + 30_000);
}

/** What the scenarios of lib/store-scenarios.ts and lib/llm-scenarios.ts share with this file. */
function context(readyz: Results['readyz'], stops: Results['otherStops']): StoreContext {
  return {
    root,
    outDir,
    say,
    load,
    newDataDir,
    trackDatabase: (db) => {
      benchDb = db;
    },
    connections: CONNECTIONS,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    readyz,
    stops,
  };
}

function machineAndDate(): Pick<Results, 'date' | 'machine'> {
  const date = new Date().toISOString();
  const machine = { cores, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, platform: process.platform };
  say(`Gatehouse bench, ${date}: ${cores} cores (${machine.cpu}), node ${machine.node}`);
  return { date, machine };
}

/** BENCH_ONLY=llm: the LLM gateway scenarios alone. */
async function measureLlm(): Promise<LlmOnlyResults> {
  const { date, machine } = machineAndDate();
  const readyz: Results['readyz'] = [];
  const otherStops: Results['otherStops'] = [];
  const outcome = await llmGateway(context(readyz, otherStops), LLM_SETTINGS, LLM_TARGET);
  return {
    date,
    machine,
    connections: CONNECTIONS,
    warmupSeconds: WARMUP_S,
    measureSeconds: MEASURE_S,
    llm: { settings: LLM_SETTINGS, targets: LLM_TARGET, outcome },
    readyz,
    otherStops,
  };
}

async function measure(): Promise<Results> {
  const { date, machine } = machineAndDate();
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
    // The existing API-key scenario: its user's plan limit is counted (in memory here) on every request.
    { name: LIMITED, target: TARGET.apiKey, spec: get('/api/auth/me', f.apiKey) },
    // The same request by a user on a plan without limits: the baseline for "limits on / limits off".
    { name: UNLIMITED, target: null, spec: get('/api/auth/me', f.unlimitedApiKey) },
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
  const measured: { name: string; target: number | null; result: LoadResult }[] = [];
  for (const c of cases) {
    await bareRun();
    measured.push({ ...c, result: await gatehouseRun(c.name, c.spec) });
  }
  await bareRun();
  const bareRps = mean(bareRuns.map((r) => r.rps));
  const throughput: Scenario[] = measured.map(({ name, target, result }) => {
    const ratio = result.rps / bareRps;
    if (target === null) return { ...result, name, ratio, target: '', met: null };
    return { ...result, name, ratio, target: `>= ${target}x bare`, met: ratio >= target };
  });
  const byName = (name: string) => measured.find((m) => m.name === name)!.result;
  const limitsInMemory = compareLimits(byName(LIMITED), byName(UNLIMITED), TARGET.limitsMemory);

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

  // One Gatehouse at a time: the next starts only once the one before has stopped.
  const otherStops: Results['otherStops'] = [];
  const stores = context(readyz, otherStops);
  const limitsRedis = await limitsOnRedis(stores, { url: REDIS_URL, target: TARGET.limitsRedis });
  const usage = await usageOnPostgres(stores, {
    url: PG_URL,
    targetP99Ms: TARGET.usageP99Ms,
    warmup: USAGE_WARMUP,
    count: USAGE_REQUESTS,
  });
  const llm = await llmGateway(stores, LLM_SETTINGS, LLM_TARGET);
  const webhooks = await webhookOutbox(stores, WEBHOOK_EVENTS, TARGET.webhooksPerSecond);
  const realtime = await realtimeFanOut(stores, REALTIME_SETTINGS, REALTIME_TARGET);

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
      redisUrl: shown(REDIS_URL),
      databaseUrl: shown(PG_URL),
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
    limits: [
      { counters: 'in memory (the SQLite Gatehouse above)', target: TARGET.limitsMemory, outcome: limitsInMemory },
      { counters: `Redis (${shown(REDIS_URL)})`, target: TARGET.limitsRedis, outcome: limitsRedis },
    ],
    usage: { targetP99Ms: TARGET.usageP99Ms, warmup: USAGE_WARMUP, count: USAGE_REQUESTS, outcome: usage },
    llm: { settings: LLM_SETTINGS, targets: LLM_TARGET, outcome: llm },
    webhooks,
    realtime,
    readyz,
    gatehouseStop,
    otherStops,
  };
}

mkdirSync(outDir, { recursive: true });
const only = process.env.BENCH_ONLY;
if (only !== undefined && only !== 'llm' && only !== 'webhooks' && only !== 'realtime') {
  say(`BENCH_ONLY=${only}: unknown (BENCH_ONLY=llm, webhooks or realtime runs those scenarios alone)`);
  process.exit(2);
}
/** BENCH_ONLY=webhooks: the webhook outbox scenario alone. */
async function measureWebhooks() {
  const { date, machine } = machineAndDate();
  const webhooks = await webhookOutbox(context([], []), WEBHOOK_EVENTS, TARGET.webhooksPerSecond);
  return { date, machine, webhooks };
}
/** BENCH_ONLY=realtime: the realtime scenario alone. */
async function measureRealtime() {
  const { date, machine } = machineAndDate();
  const realtime = await realtimeFanOut(context([], []), REALTIME_SETTINGS, REALTIME_TARGET);
  return { date, machine, realtime };
}
const run: Promise<{ file: string; results: unknown; report: string }> =
  only === 'realtime'
    ? measureRealtime().then((results) => ({
        file: 'results-realtime.json',
        results,
        report: formatRealtime(results.realtime).join('\n'),
      }))
    : only === 'llm'
      ? measureLlm().then((results) => ({ file: 'results-llm.json', results, report: formatLlmOnly(results) }))
      : only === 'webhooks'
        ? measureWebhooks().then((results) => ({
            file: 'results-webhooks.json',
            results,
            report: formatWebhooks(results.webhooks).join('\n'),
          }))
        : measure().then((results) => ({ file: 'results.json', results, report: formatReport(results) }));
run
  .then(({ file, results, report }) => {
    writeFileSync(join(outDir, file), `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`${report}\n`);
  })
  .catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(cleanUp);
