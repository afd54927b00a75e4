import type { BoundResult } from '../argon2-bound.js';
import type { LoadResult } from '../load.js';
import type { OverloadResult } from '../overload.js';
import { num, table, verdict } from './table.js';

export interface Scenario extends LoadResult {
  name: string;
  /** req/s over the bare route's mean (throughput) or over the argon2 bound (login). */
  ratio: number;
  target: string;
  met: boolean;
}

export interface Results {
  date: string;
  machine: { cores: number; cpu: string; node: string; platform: string };
  settings: {
    connections: number;
    warmupSeconds: number;
    measureSeconds: number;
    loginConnections: number;
    admitted: number;
    overloadConnections: number;
    overloadAccounts: number;
    requestTimeoutMs: number;
    idleSeconds: number;
    argon2: { memoryCost: number; timeCost: number; parallelism: number };
    server: string;
  };
  bare: { meanRps: number; meanP50: number; meanP99: number; runs: LoadResult[] };
  /** Compared with the bare route. */
  throughput: Scenario[];
  /** Compared with the argon2 bound. */
  login: Scenario;
  /** Mean of the runs before and after the login scenario. */
  argon2Bound: { verifiesPerSecond: number; concurrency: number; runs: BoundResult[] };
  overload: OverloadResult & {
    targets: { admittedP99Ms: number; rejectedP99Ms: number };
    /** rejectedP99 is null when nothing was rejected. */
    met: { admittedP99: boolean; rejectedP99: boolean | null; timeouts: boolean };
  };
  rss: {
    idleMiB: number | null;
    idleMB: number | null;
    targetMB: number;
    met: boolean;
    helpersMiB: number;
    bareIdleMiB: number | null;
    afterLoadMiB: number | null;
  };
  /** GET /readyz (pings the database, 3 s deadline) after each Gatehouse scenario. */
  readyz: { after: string; status: string }[];
  gatehouseStop: 'exited' | 'killed';
}

export function formatReport(r: Results): string {
  const s = r.settings;
  const out: string[] = [
    '',
    `Gatehouse bench — ${r.date} — ${r.machine.cores} cores (${r.machine.cpu}), node ${r.machine.node}`,
    `Server: ${s.server}. Clients: separate processes on 127.0.0.1; throughput scenarios ${s.connections} connections,`,
    `${s.warmupSeconds} s warmup + ${s.measureSeconds} s measured; req/s counts 2xx only; latency of 2xx, 1 ms resolution.`,
    '',
  ];
  const row = (x: Scenario) => [
    x.name,
    num(x.rps),
    num(x.p50),
    num(x.p99),
    `${num(x.ratio, 2)}x`,
    x.target,
    x.ok === 0 ? 'FAIL (no 2xx)' : verdict(x.met),
  ];
  out.push(
    table(
      ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'target', 'result'],
      [
        [
          `bare Fastify GET / (mean of ${r.bare.runs.length})`,
          num(r.bare.meanRps),
          num(r.bare.meanP50, 1),
          num(r.bare.meanP99, 1),
          '1.00x',
          '',
          '',
        ],
        ...r.throughput.map(row),
        [
          `argon2id verify bound (${r.argon2Bound.concurrency} at once, mean of ${r.argon2Bound.runs.length})`,
          num(r.argon2Bound.verifiesPerSecond, 1),
          '',
          '',
          '',
          '',
          '',
        ],
        row(r.login),
      ],
    ),
    '',
  );

  const o = r.overload;
  out.push(
    `Overload: POST /api/auth/login of ${s.overloadAccounts} accounts from ${s.overloadConnections} connections (10x the ${s.admitted} admitted), ` +
      `${num(o.seconds, 1)} s, ${s.requestTimeoutMs / 1000} s per-request timeout`,
    table(
      ['outcome', 'count', 'p50 ms', 'p99 ms', 'max ms', 'target', 'result'],
      [
        [
          'admitted (200)',
          num(o.admitted.count),
          num(o.admitted.p50),
          num(o.admitted.p99),
          num(o.admitted.max),
          `p99 < ${o.targets.admittedP99Ms} ms`,
          verdict(o.met.admittedP99),
        ],
        [
          'rejected (503 overloaded)',
          num(o.rejected.count),
          num(o.rejected.p50),
          num(o.rejected.p99),
          num(o.rejected.max),
          `p99 < ${o.targets.rejectedP99Ms} ms`,
          verdict(o.met.rejectedP99),
        ],
        ['timeouts', num(o.timeouts), '', '', '', '0', verdict(o.met.timeouts)],
      ],
    ),
    '',
  );

  const m = r.rss;
  out.push(
    table(
      ['memory', 'MiB', 'MB', 'target', 'result'],
      [
        [
          `Gatehouse idle RSS (${s.idleSeconds} s after start)`,
          num(m.idleMiB, 1),
          num(m.idleMB, 1),
          `< ${m.targetMB} MB`,
          verdict(m.met),
        ],
        ...(m.helpersMiB > 0 ? [['  + its child processes (esbuild for tsx)', num(m.helpersMiB, 1), '', '', '']] : []),
        ['bare Fastify idle RSS (run through tsx)', num(m.bareIdleMiB, 1), '', '', ''],
        ['Gatehouse RSS after all load', num(m.afterLoadMiB, 1), '', '', ''],
      ],
    ),
    '',
  );

  const notes = [
    `bare runs, req/s: ${r.bare.runs.map((b) => num(b.rps)).join(', ')}`,
    `argon2id bound runs, verifies/s: ${r.argon2Bound.runs.map((b) => num(b.verifiesPerSecond, 1)).join(', ')}`,
    ...[...r.bare.runs.map((b, i) => ({ ...b, name: `bare #${i + 1}` })), ...r.throughput, r.login]
      .filter((x) => x.ok === 0 || x.non2xx + x.errors + x.timeouts > 0 || x.sent > x.ok + x.non2xx + x.connections)
      .map(
        (x) =>
          `${x.name}: ${x.ok} 2xx, ${x.non2xx} other ${JSON.stringify(x.statusCodes)}, ${x.errors} errors, ` +
          `${x.timeouts} timeouts, ${x.sent - x.ok - x.non2xx} sent without an answer`,
      ),
    ...Object.entries(o.other).map(([what, count]) => `overload: ${count} responses "${what}"`),
    ...Object.entries(o.errors).map(([what, count]) => `overload: ${count} request errors ${what}`),
    ...r.readyz
      .filter((p) => p.status !== '200')
      .map((p) => `GET /readyz after ${p.after}: ${p.status} (the database stopped answering)`),
    ...(r.gatehouseStop === 'killed' ? ['Gatehouse did not exit within 5 s of SIGTERM; it was killed'] : []),
  ];
  out.push('Notes:', ...notes.map((n) => `  - ${n}`), '', 'Results also in .bench/results.json.');
  return out.join('\n');
}
