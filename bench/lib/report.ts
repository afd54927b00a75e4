import type { BoundResult } from '../argon2-bound.js';
import type { LoadResult } from '../load.js';
import type { OverloadResult } from '../overload.js';
import type { SequentialResult } from '../sequential.js';
import { formatLlm, type LlmGatewayBench } from './llm-report.js';
import { formatRealtime, type RealtimeBench } from './realtime-scenarios.js';
import { num, table, verdict } from './table.js';
import { formatWebhooks, type WebhookBench } from './webhook-scenarios.js';

export interface Scenario extends LoadResult {
  name: string;
  /** req/s over the bare route's mean (throughput) or over the argon2 bound (login). */
  ratio: number;
  /** '' for a reference row without a target of its own (met is then null). */
  target: string;
  met: boolean | null;
}

/** A part of the bench that needs a store which may not be there, or that broke: never a number then. */
export interface NotMeasured {
  status: 'skipped' | 'failed';
  reason: string;
}

/** GET /api/auth/me with the API key of a user whose plan limits are counted vs one on a plan without limits. */
export interface LimitsComparison {
  counters: string;
  /** rps(limited) / rps(unlimited) must reach this. */
  target: number;
  outcome:
    | { status: 'measured'; limited: LoadResult; unlimited: LoadResult; ratio: number; met: boolean }
    | NotMeasured;
}

export interface UsageLatency extends SequentialResult {
  name: string;
  /** totals.llm_requests of the answer checked before measuring: must be the fixture's event count. */
  llmRequests: number;
  met: boolean;
}

export interface UsageSummaryBench {
  targetP99Ms: number;
  warmup: number;
  count: number;
  outcome:
    | {
        status: 'measured';
        database: string;
        events: number;
        rollupRows: number;
        tokensUsed: number;
        fixtureSeconds: { events: number; rollups: number; analyze: number };
        requests: UsageLatency[];
      }
    | NotMeasured;
}

/**
 * The LLM gateway against a fake upstream on loopback, directly and through Gatehouse (SQLite),
 * in the same run. Direct runs before and after the Gatehouse run are averaged where both are.
 */
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
    redisUrl: string;
    databaseUrl: string;
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
  /** In memory (the SQLite Gatehouse, same run as the rows above), then in Redis (a Gatehouse of its own). */
  limits: LimitsComparison[];
  /** GET /api/usage and GET /api/admin/usage over a month of usage, Gatehouse on PostgreSQL. */
  usage: UsageSummaryBench;
  /** The LLM gateway against a fake upstream, direct and through a Gatehouse of its own (SQLite). */
  llm: LlmGatewayBench;
  webhooks: WebhookBench;
  realtime: RealtimeBench;
  /** GET /readyz (pings the database, 3 s deadline) after each Gatehouse scenario. */
  readyz: { after: string; status: string }[];
  gatehouseStop: 'exited' | 'killed';
  /** The Gatehouses on Redis, PostgreSQL and of the LLM scenarios, stopped after their scenarios. */
  otherStops: { gatehouse: string; how: 'exited' | 'killed' }[];
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
    x.ok === 0 ? 'FAIL (no 2xx)' : x.target === '' ? '' : verdict(x.met),
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

  out.push(
    'Rate limits: GET /api/auth/me with the API key of a user on plan `bench` (hourly request limit 10^12: counted on',
    'every request, never reached) vs one on plan `unlimited` (nothing counted); same load settings as above.',
    table(
      ['counters', 'limited req/s', 'p99 ms', 'unlimited req/s', 'p99 ms', 'limits on / off', 'target', 'result'],
      r.limits.map((c) => {
        const o = c.outcome;
        const target = `>= ${c.target}x`;
        if (o.status !== 'measured') return [c.counters, '-', '', '-', '', '-', target, o.status.toUpperCase()];
        const noAnswers = o.limited.ok === 0 || o.unlimited.ok === 0;
        return [
          c.counters,
          num(o.limited.rps),
          num(o.limited.p99),
          num(o.unlimited.rps),
          num(o.unlimited.p99),
          `${num(o.ratio, 2)}x`,
          target,
          noAnswers ? 'FAIL (no 2xx)' : verdict(o.met),
        ];
      }),
    ),
    ...r.limits.flatMap((c) =>
      c.outcome.status === 'measured' ? [] : [`${c.counters} ${c.outcome.status}: ${c.outcome.reason}`],
    ),
    '',
  );

  const u = r.usage;
  const uo = u.outcome;
  out.push(
    uo.status === 'measured'
      ? `Usage summary: Gatehouse on PostgreSQL (database ${uo.database}, dropped after), ${num(uo.events)} LLM usage events of one user ` +
          `this month, written by SQL mirroring addToRollups (${num(uo.rollupRows)} rollup rows; not through the API); ` +
          `one request at a time, ${u.warmup} warmup + ${u.count} measured`
      : `Usage summary (Gatehouse on PostgreSQL at ${s.databaseUrl}, a month of usage events): ${uo.status}: ${uo.reason}`,
    table(
      ['request', 'p50 ms', 'p99 ms', 'max ms', 'totals.llm_requests', 'target', 'result'],
      uo.status === 'measured'
        ? uo.requests.map((x) => [
            x.name,
            num(x.p50, 1),
            num(x.p99, 1),
            num(x.max, 1),
            num(x.llmRequests),
            `p99 < ${u.targetP99Ms} ms`,
            verdict(x.met),
          ])
        : ['GET /api/usage', 'GET /api/admin/usage'].map((name) => [
            name,
            '-',
            '-',
            '-',
            '-',
            `p99 < ${u.targetP99Ms} ms`,
            uo.status.toUpperCase(),
          ]),
    ),
    '',
  );

  out.push(...formatLlm(r.llm, s.connections), '');
  out.push(...formatWebhooks(r.webhooks), '');
  out.push(...formatRealtime(r.realtime), '');

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
    ...[
      ...r.bare.runs.map((b, i) => ({ ...b, name: `bare #${i + 1}` })),
      ...r.throughput,
      r.login,
      ...r.limits.flatMap((c) =>
        c.outcome.status === 'measured' && c.counters.startsWith('Redis')
          ? [
              { ...c.outcome.limited, name: `${c.counters}, limited` },
              { ...c.outcome.unlimited, name: `${c.counters}, unlimited` },
            ]
          : [],
      ),
    ]
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
    ...r.otherStops
      .filter((x) => x.how === 'killed')
      .map((x) => `Gatehouse (${x.gatehouse}) did not exit within 5 s of SIGTERM; it was killed`),
    ...(uo.status === 'measured'
      ? [
          `usage fixture: ${num(uo.events)} events in ${num(uo.fixtureSeconds.events, 1)} s, rollups and budget in ` +
            `${num(uo.fixtureSeconds.rollups, 1)} s, ANALYZE ${num(uo.fixtureSeconds.analyze, 1)} s; tokens used this month ${num(uo.tokensUsed)}`,
          ...uo.requests
            .filter((x) => Object.keys(x.statusCodes).some((code) => code !== '200'))
            .map((x) => `${x.name}: statuses ${JSON.stringify(x.statusCodes)}`),
        ]
      : []),
  ];
  out.push('Notes:', ...notes.map((n) => `  - ${n}`), '', 'Results also in .bench/results.json.');
  return out.join('\n');
}
