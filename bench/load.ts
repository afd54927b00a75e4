// Load child: one autocannon run (warmup, then the measured part) described by JSON on stdin;
// the summary goes to stdout as JSON. Runs in its own process so the client never shares the
// orchestrator's event loop.
import autocannon from 'autocannon';
import { readInput } from './lib/procs.js';

export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
}

export interface LoadResult {
  /** 2xx responses per second over the measured part (warmup excluded). */
  rps: number;
  /** Latency of 2xx responses, milliseconds (autocannon's 1 ms resolution). */
  p50: number;
  p99: number;
  ok: number;
  /** Requests sent during the measured part; far above ok + non2xx means requests went unanswered. */
  sent: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  seconds: number;
  connections: number;
}

const spec = await readInput<LoadSpec>();
const result = await autocannon({
  url: spec.url,
  method: spec.method,
  headers: spec.headers,
  body: spec.body,
  connections: spec.connections,
  pipelining: 1,
  timeout: 10,
  duration: spec.seconds,
  warmup: { connections: spec.connections, duration: spec.warmupSeconds },
});
const summary: LoadResult = {
  rps: result['2xx'] / result.duration,
  p50: result.latency.p50,
  p99: result.latency.p99,
  ok: result['2xx'],
  sent: result.requests.sent,
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])),
  seconds: result.duration,
  connections: spec.connections,
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
