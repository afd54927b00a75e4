// The LLM gateway part of the bench report: its result types and tables (lib/llm-scenarios.ts
// measures; report.ts prints the whole run).

import type { LoadResult } from '../load.js';
import type { SequentialResult } from '../sequential.js';
import type { StreamResult } from '../stream.js';
import type { NotMeasured, Results } from './report.js';
import { num, table, verdict } from './table.js';

const signed = (ms: number, digits = 2) => `${ms >= 0 ? '+' : ''}${num(ms, digits)}`;
const percent = (part: number, whole: number) => (whole > 0 ? `${num((part / whole) * 100, 1)}%` : '-');
const allOk = (codes: Record<string, number>) => Object.keys(codes).every((code) => code === '200');

export interface LlmGatewayBench {
  settings: {
    /** Content chunks per stream, and the upstream's spacing between them. */
    chunks: number;
    intervalMs: number;
    /** One non-streaming request in flight. */
    latency: { warmup: number; count: number };
    /** Streams of unpaced chunks, one at a time: time to first byte. */
    ttfb: { warmup: number; count: number };
    /** Streams of chunks `intervalMs` apart, one at a time: are they forwarded as they arrive. */
    paced: { warmup: number; count: number };
  };
  targets: {
    /** Gatehouse req/s over direct req/s, non-streaming, at the bench's connections. */
    rpsRatio: number;
    /** p50 added at one request in flight, non-streaming. */
    addedP50Ms: number;
    /** p50 time to first byte added, streaming. */
    addedTtfbMs: number;
    /** Median gap between chunks through Gatehouse, as a share of the upstream's interval. */
    gapShare: number;
    /** Share of gaps under half the interval (chunks bunched together) at most. */
    bunchedShare: number;
  };
  outcome:
    | {
        status: 'measured';
        throughput: {
          direct: LoadResult[];
          gatehouse: LoadResult;
          directRps: number;
          ratio: number;
          /** Fastify + undici forwarding with no checks (bench/passthrough.ts): any Node proxy's ceiling here. */
          passthrough: LoadResult;
          passthroughRatio: number;
          met: boolean;
        };
        latency: {
          direct: SequentialResult[];
          gatehouse: SequentialResult;
          directP50: number;
          directP99: number;
          addedP50: number;
          met: boolean;
        };
        ttfb: {
          direct: StreamResult[];
          gatehouse: StreamResult;
          directP50: number;
          directP99: number;
          addedP50: number;
          met: boolean;
        };
        paced: { direct: StreamResult; gatehouse: StreamResult; gapMet: boolean; bunchedMet: boolean };
      }
    | NotMeasured;
}

/** `BENCH_ONLY=llm npm run bench`: the LLM gateway scenarios alone (written to .bench/results-llm.json). */
export interface LlmOnlyResults {
  date: string;
  machine: Results['machine'];
  connections: number;
  warmupSeconds: number;
  measureSeconds: number;
  llm: LlmGatewayBench;
  readyz: Results['readyz'];
  otherStops: Results['otherStops'];
}

/** The LLM gateway table and its notes (runs with errors, malformed streams). */
export function formatLlm(l: LlmGatewayBench, connections: number): string[] {
  const st = l.settings;
  const t = l.targets;
  const o = l.outcome;
  const title = 'LLM gateway (fake upstream on loopback, SQLite)';
  const head = [title, 'direct', 'gatehouse', 'added / ratio', 'target', 'result'];
  const intro = [
    'LLM gateway: POST chat/completions to a fake OpenAI-compatible upstream (node:http, bench/upstream.ts) directly and',
    'through a Gatehouse of its own with it as provider; the bench user on plan `llm-bench` (LLM calls per hour and token',
    'budget counted, reserved and settled on every call, never reached). Same upstream, same run; direct is the mean of the',
    `runs before and after the Gatehouse run (paced streams: one run each). One request in flight: ${st.latency.warmup} warmup + ${st.latency.count};`,
    `time to first byte: ${st.ttfb.warmup} warmup + ${st.ttfb.count} streams with unpaced chunks; paced: ${st.paced.warmup} warmup + ` +
      `${st.paced.count} streams of ${st.chunks} content chunks`,
    `sent ${st.intervalMs} ms apart; gaps are between consecutive chunks with choices at the client (role chunk included).`,
  ];
  if (o.status !== 'measured') {
    return [
      ...intro,
      table(head, [[`not measured: ${o.status}`, '-', '-', '-', '', o.status.toUpperCase()]]),
      `LLM gateway ${o.status}: ${o.reason}`,
    ];
  }
  const { throughput: tp, latency: lat, ttfb, paced } = o;
  const dg = paced.direct.gaps;
  const gg = paced.gatehouse.gaps;
  const streamsOk = (r: StreamResult) => allOk(r.statusCodes) && r.malformed === 0;
  const latencyOk = [...lat.direct, lat.gatehouse].every((r) => allOk(r.statusCodes));
  const ttfbOk = [...ttfb.direct, ttfb.gatehouse].every(streamsOk);
  const pacedOk = streamsOk(paced.direct) && streamsOk(paced.gatehouse);
  const directP99Load = tp.direct.reduce((a, r) => a + r.p99, 0) / tp.direct.length;
  const half = st.intervalMs / 2;
  const rows = [
    [
      `non-streaming req/s (${connections} conn.)`,
      num(tp.directRps),
      num(tp.gatehouse.rps),
      `${num(tp.ratio, 2)}x`,
      `>= ${t.rpsRatio}x`,
      tp.gatehouse.ok === 0 || tp.gatehouse.non2xx > 0 ? 'FAIL (non-2xx)' : verdict(tp.met),
    ],
    [`  p99 ms at that load (1 ms resolution)`, num(directP99Load), num(tp.gatehouse.p99), '', '', ''],
    [
      '  pass-through proxy, no checks (ceiling)',
      '',
      num(tp.passthrough.rps),
      `${num(tp.passthroughRatio, 2)}x`,
      '',
      '',
    ],
    [
      'one request in flight, p50 ms',
      num(lat.directP50, 2),
      num(lat.gatehouse.p50, 2),
      signed(lat.addedP50),
      `<= ${t.addedP50Ms} ms added`,
      latencyOk ? verdict(lat.met) : 'FAIL (non-200)',
    ],
    ['  p99 ms', num(lat.directP99, 2), num(lat.gatehouse.p99, 2), signed(lat.gatehouse.p99 - lat.directP99), '', ''],
    [
      'stream time to first byte, p50 ms',
      num(ttfb.directP50, 2),
      num(ttfb.gatehouse.ttfb.p50, 2),
      signed(ttfb.addedP50),
      `<= ${t.addedTtfbMs} ms added`,
      ttfbOk ? verdict(ttfb.met) : 'FAIL (bad streams)',
    ],
    [
      '  p99 ms',
      num(ttfb.directP99, 2),
      num(ttfb.gatehouse.ttfb.p99, 2),
      signed(ttfb.gatehouse.ttfb.p99 - ttfb.directP99),
      '',
      '',
    ],
    [
      `stream chunk gap, median ms (sent ${st.intervalMs} ms apart)`,
      num(dg?.p50, 2),
      num(gg?.p50, 2),
      gg ? `${num(gg.p50 / st.intervalMs, 2)}x` : '-',
      `>= ${num(t.gapShare * st.intervalMs, 1)} ms (${t.gapShare}x)`,
      pacedOk ? verdict(paced.gapMet) : 'FAIL (bad streams)',
    ],
    [
      '  gap p1 / min ms',
      dg ? `${num(dg.p1, 2)} / ${num(dg.min, 2)}` : '-',
      gg ? `${num(gg.p1, 2)} / ${num(gg.min, 2)}` : '-',
      '',
      '',
      '',
    ],
    [
      `chunks bunched (gap < ${num(half, 1)} ms)`,
      dg ? percent(dg.bunched, dg.count) : '-',
      gg ? percent(gg.bunched, gg.count) : '-',
      '',
      `<= ${num(t.bunchedShare * 100, 1)}%`,
      pacedOk ? verdict(paced.bunchedMet) : 'FAIL (bad streams)',
    ],
    [
      `whole paced stream, p50 ms`,
      num(paced.direct.duration.p50, 1),
      num(paced.gatehouse.duration.p50, 1),
      signed(paced.gatehouse.duration.p50 - paced.direct.duration.p50, 1),
      '',
      '',
    ],
  ];
  const notes: string[] = [];
  for (const [i, r] of tp.direct.entries()) {
    if (r.rps > 0 && r.non2xx + r.errors + r.timeouts === 0) continue;
    notes.push(
      `direct load #${i + 1}: ${r.ok} 2xx, ${r.non2xx} other ${JSON.stringify(r.statusCodes)}, ${r.errors} errors`,
    );
  }
  const g = tp.gatehouse;
  if (g.ok === 0 || g.non2xx + g.errors + g.timeouts > 0) {
    notes.push(
      `gatehouse load: ${g.ok} 2xx, ${g.non2xx} other ${JSON.stringify(g.statusCodes)}, ${g.errors} errors, ${g.timeouts} timeouts`,
    );
  }
  const named = <T>(direct: T[], gatehouse: T) => [
    ...direct.map((x, i) => ({ name: `direct #${i + 1}`, x })),
    { name: 'gatehouse', x: gatehouse },
  ];
  for (const { name, x } of named(lat.direct, lat.gatehouse)) {
    if (!allOk(x.statusCodes)) notes.push(`one in flight, ${name}: statuses ${JSON.stringify(x.statusCodes)}`);
  }
  for (const { name, x } of [
    ...named(ttfb.direct, ttfb.gatehouse).map((n) => ({ ...n, name: `time to first byte, ${n.name}` })),
    { name: 'paced, direct', x: paced.direct },
    { name: 'paced, gatehouse', x: paced.gatehouse },
  ]) {
    if (!allOk(x.statusCodes)) notes.push(`${name}: statuses ${JSON.stringify(x.statusCodes)}`);
    if (x.malformed > 0) notes.push(`${name}: ${x.malformed} malformed streams, e.g. ${x.example}`);
  }
  return [...intro, table(head, rows), ...notes.map((n) => `  - ${n}`)];
}

/** The report of `BENCH_ONLY=llm`: the LLM gateway part alone. */
export function formatLlmOnly(r: LlmOnlyResults): string {
  return [
    '',
    `Gatehouse bench (LLM gateway only) — ${r.date} — ${r.machine.cores} cores (${r.machine.cpu}), node ${r.machine.node}`,
    `Clients: separate processes on 127.0.0.1; throughput ${r.connections} connections, ${r.warmupSeconds} s warmup + ` +
      `${r.measureSeconds} s measured.`,
    '',
    ...formatLlm(r.llm, r.connections),
    '',
    ...r.readyz
      .filter((p) => p.status !== '200')
      .map((p) => `GET /readyz after ${p.after}: ${p.status} (the database stopped answering)`),
    ...r.otherStops
      .filter((x) => x.how === 'killed')
      .map((x) => `Gatehouse (${x.gatehouse}) did not exit within 5 s of SIGTERM; it was killed`),
    'Results also in .bench/results-llm.json.',
  ].join('\n');
}
