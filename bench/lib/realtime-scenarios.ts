// The realtime scenario of `npm run bench` (issue 6): a Gatehouse of its own (SQLite) holds
// `connections` WebSockets of GET /api/realtime, opened by client processes (bench/ws-clients.ts);
// then a task update is published to every user of the tenant (POST /api/admin/realtime/tasks)
// `broadcasts` times, and each socket's arrival time is compared with the moment before the
// publishing request was sent. Resident memory of the Gatehouse is read before and with the sockets.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { call, createFixtures } from './gatehouse.js';
import { freePort, rssMiB, startNode, stopChild, waitForOk } from './procs.js';
import type { NotMeasured } from './report.js';
import { type Summary, summarize } from './stats.js';
import { failed, type StoreContext, withGatehouse } from './store-scenarios.js';

export interface RealtimeSettings {
  connections: number;
  /** Client processes the sockets are spread over (they share the machine's cores with Gatehouse). */
  clientProcesses: number;
  broadcasts: number;
  /** Between two broadcasts. */
  gapMs: number;
}

export interface RealtimeTargets {
  rssMB: number;
  p99Ms: number;
}

/** One fan-out measured: sockets opened, broadcasts sent, arrivals timed, memory read. */
export interface FanOut {
  connected: number;
  refused: number;
  /** Seconds to open and authenticate every socket. */
  connectSeconds: number;
  rssBeforeMiB: number | null;
  rssConnectedMiB: number | null;
  rssAfterMiB: number | null;
  delivered: number;
  expected: number;
  lost: number;
  /** Publish to arrival, every socket and broadcast. */
  latency: Summary;
  /** Per broadcast: publish to the last socket's arrival. */
  lastArrival: Summary;
}

export interface RealtimeBench {
  settings: RealtimeSettings;
  targets: RealtimeTargets;
  /** The same fan-out from a bare `ws` server (bench/ws-bare.ts): the floor on this machine. */
  bare: ({ status: 'measured' } & FanOut) | NotMeasured;
  outcome: ({ status: 'measured'; met: { rss: boolean; p99: boolean } } & FanOut) | NotMeasured;
}

const now = () => performance.timeOrigin + performance.now();
const MIB_PER_MB = 1_000_000 / 1_048_576;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A child's stdout as lines, one at a time. */
function lineReader(child: ChildProcess) {
  const queue: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const wake = waiting.shift();
    if (wake) wake(line);
    else queue.push(line);
  });
  return (timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const line = queue.shift();
      if (line !== undefined) return resolve(line);
      const timer = setTimeout(
        () => reject(new Error(`no answer from a client process in ${timeoutMs} ms`)),
        timeoutMs,
      );
      waiting.push((next) => {
        clearTimeout(timer);
        resolve(next);
      });
    });
}

/**
 * Opens the sockets from the client processes, sends `broadcasts` with `publish` (the time is
 * taken just before it), and collects the arrivals. The client processes are stopped after.
 */
async function fanOut(
  ctx: StoreContext,
  settings: RealtimeSettings,
  target: { url: string; token: string; pid: number; publish: (index: number) => Promise<void> },
): Promise<FanOut> {
  const clients: ChildProcess[] = [];
  try {
    const rssBeforeMiB = rssMiB(target.pid);
    const started = Date.now();
    const readers = [];
    for (let i = 0; i < settings.clientProcesses; i++) {
      const client = startNode(join(ctx.root, 'bench/ws-clients.ts'));
      clients.push(client);
      readers.push(lineReader(client));
      const count = Math.ceil(settings.connections / settings.clientProcesses);
      client.stdin?.write(`${JSON.stringify({ url: target.url, token: target.token, count, concurrency: 100 })}\n`);
    }
    const ready = (await Promise.all(readers.map((read) => read(180_000)))).map(
      (line) => JSON.parse(line) as { ready: number; failed: number },
    );
    const connectSeconds = (Date.now() - started) / 1000;
    const connected = ready.reduce((sum, r) => sum + r.ready, 0);
    await sleep(1_000);
    const rssConnectedMiB = rssMiB(target.pid);
    const sentAt: number[] = [];
    for (let b = 0; b < settings.broadcasts; b++) {
      sentAt.push(now());
      await target.publish(b);
      await sleep(settings.gapMs);
    }
    const rssAfterMiB = rssMiB(target.pid);
    for (const client of clients) client.stdin?.write('report\n');
    const reports = (await Promise.all(readers.map((read) => read(60_000)))).map(
      (line) => JSON.parse(line) as { arrivals: number[][]; closed: number },
    );
    const latencies: number[] = [];
    const lasts: number[] = [];
    for (let b = 0; b < settings.broadcasts; b++) {
      const arrived = reports.flatMap((report) => report.arrivals[b] ?? []);
      for (const at of arrived) latencies.push(at - sentAt[b]);
      if (arrived.length > 0) lasts.push(Math.max(...arrived) - sentAt[b]);
    }
    return {
      connected,
      refused: ready.reduce((sum, r) => sum + r.failed, 0),
      connectSeconds,
      rssBeforeMiB,
      rssConnectedMiB,
      rssAfterMiB,
      delivered: latencies.length,
      expected: connected * settings.broadcasts,
      lost: reports.reduce((sum, r) => sum + r.closed, 0),
      latency: summarize(latencies),
      lastArrival: summarize(lasts),
    };
  } finally {
    await Promise.all(clients.map((client) => stopChild(client)));
  }
}

/** The bare `ws` server's fan-out (bench/ws-bare.ts). */
async function bareFanOut(ctx: StoreContext, settings: RealtimeSettings): Promise<RealtimeBench['bare']> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = startNode(join(ctx.root, 'bench/ws-bare.ts'), {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port) },
  });
  try {
    await waitForOk(`${base}/healthz`, server, 30_000);
    ctx.say(`realtime: the same fan-out from a bare ws server (reference)`);
    const measured = await fanOut(ctx, settings, {
      url: `ws://127.0.0.1:${port}/`,
      token: 'none',
      pid: server.pid as number,
      publish: async () => {
        const res = await fetch(`${base}/broadcast`, { method: 'POST' });
        if (res.status !== 202) throw new Error(`bare broadcast answered ${res.status}`);
      },
    });
    return { status: 'measured', ...measured };
  } catch (error) {
    return failed(ctx.say, 'realtime fan-out (bare ws)', error);
  } finally {
    await stopChild(server);
  }
}

export async function realtimeFanOut(
  ctx: StoreContext,
  settings: RealtimeSettings,
  targets: RealtimeTargets,
): Promise<RealtimeBench> {
  const bare = await bareFanOut(ctx, settings);
  try {
    const outcome = await withGatehouse(ctx, 'realtime', {}, async ({ baseUrl, setupToken, child }) => {
      const f = await createFixtures(baseUrl, await setupToken, { crowd: false });
      await sleep(1_000);
      ctx.say(
        `realtime: ${settings.connections.toLocaleString('en-US')} WebSockets from ${settings.clientProcesses} client processes, then ${settings.broadcasts} broadcasts`,
      );
      const measured = await fanOut(ctx, settings, {
        url: `${baseUrl.replace(/^http/, 'ws')}/api/realtime`,
        token: f.unlimitedApiKey,
        pid: child.pid as number,
        publish: async (b) => {
          await call(
            baseUrl,
            'POST',
            '/api/admin/realtime/tasks',
            { task: { taskId: `bench-${b}`, status: 'processing', progress: b } },
            202,
            f.serviceKey,
          );
        },
      });
      const peakMB = Math.max(measured.rssConnectedMiB ?? Number.NaN, measured.rssAfterMiB ?? Number.NaN) / MIB_PER_MB;
      return {
        status: 'measured' as const,
        ...measured,
        met: {
          rss: measured.connected === settings.connections && peakMB < targets.rssMB,
          p99: measured.delivered === measured.expected && measured.latency.p99 <= targets.p99Ms,
        },
      };
    });
    return { settings, targets, bare, outcome };
  } catch (error) {
    return { settings, targets, bare, outcome: failed(ctx.say, 'realtime fan-out', error) };
  }
}

export function formatRealtime(r: RealtimeBench): string[] {
  const o = r.outcome;
  const head = 'realtime WebSockets (SQLite, one instance)';
  if (o.status !== 'measured') return [`${head}: ${o.status.toUpperCase()} (${o.reason})`];
  const mib = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(1)} MiB`);
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const latency = (f: FanOut) =>
    `p50 ${f.latency.p50} ms, p99 ${f.latency.p99} ms, max ${f.latency.max} ms (to the last socket: p50 ${f.lastArrival.p50} ms)`;
  const b = r.bare;
  return [
    `${head}: ${o.connected.toLocaleString('en-US')} of ${r.settings.connections.toLocaleString('en-US')} sockets authenticated in ${o.connectSeconds.toFixed(1)} s (${o.refused} refused) from ${r.settings.clientProcesses} client processes`,
    `  RSS: ${mib(o.rssBeforeMiB)} idle, ${mib(o.rssConnectedMiB)} with the sockets, ${mib(o.rssAfterMiB)} after the broadcasts | target < ${r.targets.rssMB} MB | ${verdict(o.met.rss)}`,
    `  ${r.settings.broadcasts} broadcasts to every socket: ${o.delivered.toLocaleString('en-US')} of ${o.expected.toLocaleString('en-US')} delivered, ${o.lost} sockets lost`,
    `  publish to arrival: ${latency(o)} | target p99 <= ${r.targets.p99Ms} ms | ${verdict(o.met.p99)}`,
    b.status === 'measured'
      ? `  bare ws server, same clients (floor): ${latency(b)}; ${mib(b.rssConnectedMiB)} with the sockets`
      : `  bare ws server: ${b.status.toUpperCase()} (${b.reason})`,
  ];
}
