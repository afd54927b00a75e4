// Sequential child: one GET at a time over one keep-alive connection, `warmup` unmeasured then
// `count` measured, described by JSON on stdin; latency (request sent to body read) goes to stdout
// as JSON. Latency of a single request, not throughput: what one dashboard load waits for.
import { Agent, request } from 'node:http';
import { readInput } from './lib/procs.js';

export interface SequentialSpec {
  url: string;
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

function get(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(spec.url, { agent, headers: spec.headers, timeout: spec.timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${spec.timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

for (let i = 0; i < spec.warmup; i++) await get();
const latencies: number[] = [];
const statusCodes: Record<string, number> = {};
for (let i = 0; i < spec.count; i++) {
  const started = performance.now();
  const status = await get();
  latencies.push(performance.now() - started);
  statusCodes[status] = (statusCodes[status] ?? 0) + 1;
}
agent.destroy();
latencies.sort((a, b) => a - b);
// Nearest rank: p99 of 200 requests is the 198th fastest, so two slow outliers stay visible only in max.
const rank = (p: number) => latencies[Math.max(0, Math.ceil((p / 100) * latencies.length) - 1)];
const round = (ms: number) => Math.round(ms * 100) / 100;
const result: SequentialResult = {
  p50: round(rank(50)),
  p99: round(rank(99)),
  max: round(latencies[latencies.length - 1]),
  mean: round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
  count: latencies.length,
  statusCodes,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
