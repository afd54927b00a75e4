// Sequential child: one request at a time (GET, or POST with a body) over one keep-alive
// connection, `warmup` unmeasured then `count` measured, described by JSON on stdin; latency
// (request sent to body read) goes to stdout as JSON. Latency of a single request, not
// throughput: what one dashboard load waits for, or what one LLM call adds.
import { Agent, request } from 'node:http';
import { readInput } from './lib/procs.js';
import { summarize } from './lib/stats.js';

export interface SequentialSpec {
  url: string;
  /** Default GET; a POST sends `body` (set its content-type in `headers`). */
  method?: 'GET' | 'POST';
  body?: string;
  headers: Record<string, string>;
  warmup: number;
  count: number;
  timeoutMs: number;
}

export interface SequentialResult {
  /** Milliseconds over the measured requests, 0.01 ms resolution. */
  p50: number;
  p99: number;
  max: number;
  mean: number;
  count: number;
  /** Measured responses by status; anything but 200 means the latencies are not of real answers. */
  statusCodes: Record<string, number>;
}

const spec = await readInput<SequentialSpec>();
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function send(): Promise<number> {
  return new Promise((resolve, reject) => {
    const options = { agent, method: spec.method ?? 'GET', headers: spec.headers, timeout: spec.timeoutMs };
    const req = request(spec.url, options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${spec.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(spec.body);
  });
}

for (let i = 0; i < spec.warmup; i++) await send();
const latencies: number[] = [];
const statusCodes: Record<string, number> = {};
for (let i = 0; i < spec.count; i++) {
  const started = performance.now();
  const status = await send();
  latencies.push(performance.now() - started);
  statusCodes[status] = (statusCodes[status] ?? 0) + 1;
}
agent.destroy();
const result: SequentialResult = { ...summarize(latencies), statusCodes };
process.stdout.write(`${JSON.stringify(result)}\n`);
