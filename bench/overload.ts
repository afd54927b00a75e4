// Overload child: `connections` loops of POST /api/auth/login over keep-alive sockets for
// `seconds`, each request with its own deadline. Latency is kept per outcome, because a fast
// 503 and a slow 200 mean different things. Results go to stdout as JSON.
import { Agent, request } from 'node:http';
import { readInput } from './lib/procs.js';

export interface OverloadSpec {
  url: string;
  /** Request bodies, used in turn (sign-ins of many accounts, as real overload looks). */
  bodies: string[];
  connections: number;
  seconds: number;
  timeoutMs: number;
}

export interface Outcome {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

export interface OverloadResult {
  /** 200 responses. */
  admitted: Outcome;
  /** 503 with error code `overloaded`. */
  rejected: Outcome;
  /** Any other status, by status and code. */
  other: Record<string, number>;
  timeouts: number;
  errors: Record<string, number>;
  seconds: number;
  connections: number;
}

const spec = await readInput<OverloadSpec>();
const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
const latencies = { admitted: [] as number[], rejected: [] as number[] };
const other: Record<string, number> = {};
const errors: Record<string, number> = {};
let timeouts = 0;

type Reply = { status: number; body: string } | { error: string };

let next = 0;
function post(): Promise<Reply> {
  const body = spec.bodies[next++ % spec.bodies.length];
  return new Promise((resolve) => {
    const req = request(spec.url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ error: 'timeout' });
    }, spec.timeoutMs);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: error.code ?? error.message });
    });
    req.end(body);
  });
}

const codeOf = (body: string): string => {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? '-';
  } catch {
    return '-';
  }
};

const started = performance.now();
const end = started + spec.seconds * 1000;
const worker = async () => {
  while (performance.now() < end) {
    const t0 = performance.now();
    const reply = await post();
    const ms = performance.now() - t0;
    if ('error' in reply) {
      if (reply.error === 'timeout') timeouts++;
      else errors[reply.error] = (errors[reply.error] ?? 0) + 1;
    } else if (reply.status === 200) latencies.admitted.push(ms);
    else {
      const code = codeOf(reply.body);
      if (reply.status === 503 && code === 'overloaded') latencies.rejected.push(ms);
      else other[`${reply.status} ${code}`] = (other[`${reply.status} ${code}`] ?? 0) + 1;
    }
  }
};
await Promise.all(Array.from({ length: spec.connections }, worker));
const seconds = (performance.now() - started) / 1000;
agent.destroy();

function outcome(values: number[]): Outcome {
  const sorted = values.sort((a, b) => a - b);
  const at = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : null;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? null };
}

const result: OverloadResult = {
  admitted: outcome(latencies.admitted),
  rejected: outcome(latencies.rejected),
  other,
  timeouts,
  errors,
  seconds,
  connections: spec.connections,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
