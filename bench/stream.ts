// Streaming child: one streaming chat completion at a time over one keep-alive connection,
// `warmup` unmeasured then `count` measured, described by JSON on stdin. For each stream it
// records when the first body byte arrived (time to first byte, from just before the request is
// sent) and when each server-sent event was complete at the client; the summary goes to stdout
// as JSON. node:http and performance.now(), not fetch, so nothing buffers between the socket
// and the clock.
import { Agent, request } from 'node:http';
import { readInput } from './lib/procs.js';
import { rank, round, type Summary, summarize } from './lib/stats.js';

export interface StreamSpec {
  url: string;
  headers: Record<string, string>;
  /** The JSON request, with `stream: true`. */
  body: string;
  warmup: number;
  count: number;
  timeoutMs: number;
  /** Content chunks each stream must carry (the upstream's CHUNKS). */
  chunks: number;
  /**
   * The upstream's spacing between chunks, ms; gaps under half of it count as bunched. 0 (quick
   * streams) skips the gap statistics.
   */
  intervalMs: number;
}

export interface StreamResult {
  /** Request sent to first body byte, ms. */
  ttfb: Summary;
  /** Request sent to the end of the stream, ms. */
  duration: Summary;
  /**
   * Gaps between consecutive chunks with choices (the role chunk, then each content chunk) of a
   * stream, ms, over every measured stream: about the upstream interval when chunks are forwarded
   * as they arrive, about 0 when they are held and sent together. null for quick streams.
   */
  gaps: { p50: number; p1: number; min: number; max: number; count: number; bunched: number } | null;
  /** Measured streams by status. */
  statusCodes: Record<string, number>;
  /** Measured 200 streams that were not role chunk, `chunks` content chunks, usage chunk, [DONE]. */
  malformed: number;
  /** The first malformed stream's events, for the report. */
  example: string | null;
}

interface Event {
  at: number;
  data: string;
}

const spec = await readInput<StreamSpec>();
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

interface Streamed {
  status: number;
  started: number;
  firstByte: number;
  ended: number;
  events: Event[];
}

function stream(): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const events: Event[] = [];
    let firstByte = Number.NaN;
    let pending = '';
    const started = performance.now();
    const options = { agent, method: 'POST', headers: spec.headers, timeout: spec.timeoutMs };
    const req = request(spec.url, options, (res) => {
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        const at = performance.now();
        if (Number.isNaN(firstByte)) firstByte = at;
        pending += text;
        let end = pending.indexOf('\n\n');
        while (end !== -1) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (data) events.push({ at, data });
          end = pending.indexOf('\n\n');
        }
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, started, firstByte, ended: performance.now(), events }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${spec.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(spec.body);
  });
}

type Parsed = { choices?: unknown[]; usage?: unknown } | null;

/** Role chunk, then `chunks` content chunks, then a usage chunk, then [DONE]: what both sides must send. */
function wellFormed(events: Event[]): boolean {
  if (events.length !== spec.chunks + 3 || events[events.length - 1].data !== '[DONE]') return false;
  const parsed = events.slice(0, -1).map((e): Parsed => {
    try {
      return JSON.parse(e.data) as Parsed;
    } catch {
      return null;
    }
  });
  const usage = parsed[parsed.length - 1];
  const withChoices = parsed.slice(0, -1);
  return (
    usage !== null &&
    Array.isArray(usage.choices) &&
    usage.choices.length === 0 &&
    typeof usage.usage === 'object' &&
    usage.usage !== null &&
    withChoices.every((p) => p !== null && Array.isArray(p.choices) && p.choices.length > 0)
  );
}

for (let i = 0; i < spec.warmup; i++) await stream();
const ttfbs: number[] = [];
const durations: number[] = [];
const gaps: number[] = [];
const statusCodes: Record<string, number> = {};
let malformed = 0;
let example: string | null = null;
for (let i = 0; i < spec.count; i++) {
  const s = await stream();
  statusCodes[s.status] = (statusCodes[s.status] ?? 0) + 1;
  ttfbs.push(s.firstByte - s.started);
  durations.push(s.ended - s.started);
  if (s.status !== 200) continue;
  if (!wellFormed(s.events)) {
    malformed++;
    example ??= s.events
      .map((e) => e.data)
      .join(' | ')
      .slice(0, 600);
    continue;
  }
  // The role chunk and the content chunks: everything before the usage chunk and [DONE].
  const paced = s.events.slice(0, -2);
  for (let j = 1; j < paced.length; j++) gaps.push(paced[j].at - paced[j - 1].at);
}
agent.destroy();

gaps.sort((a, b) => a - b);
const result: StreamResult = {
  ttfb: summarize(ttfbs),
  duration: summarize(durations),
  gaps:
    spec.intervalMs > 0 && gaps.length > 0
      ? {
          p50: round(rank(gaps, 50)),
          p1: round(rank(gaps, 1)),
          min: round(gaps[0]),
          max: round(gaps[gaps.length - 1]),
          count: gaps.length,
          bunched: gaps.filter((gap) => gap < spec.intervalMs / 2).length,
        }
      : null,
  statusCodes,
  malformed,
  example,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
