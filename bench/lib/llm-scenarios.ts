// The LLM gateway scenarios of `npm run bench`: a fake OpenAI-compatible provider (bench/upstream.ts)
// on loopback, and a Gatehouse of its own (SQLite) with that provider, loaded directly and through
// Gatehouse in the same run: non-streaming requests/s, latency added at one request in flight,
// streaming time to first byte, and whether stream chunks are forwarded as they arrive. run.ts
// passes in what they share with the rest of the bench; nothing here imports run.ts.
import { join } from 'node:path';
import type { LoadResult, LoadSpec } from '../load.js';
import type { SequentialResult, SequentialSpec } from '../sequential.js';
import type { StreamResult, StreamSpec } from '../stream.js';
import { call, createFixtures, type Fixtures } from './gatehouse.js';
import type { LlmGatewayBench } from './llm-report.js';
import { freePort, probe, runJson, startNode, stopChild, waitForOk } from './procs.js';
import { failed, type StoreContext, withGatehouse } from './store-scenarios.js';

export type LlmContext = Pick<
  StoreContext,
  'root' | 'outDir' | 'say' | 'load' | 'newDataDir' | 'connections' | 'requestTimeoutMs' | 'readyz' | 'stops'
>;

export type LlmSettings = LlmGatewayBench['settings'];
export type LlmTargets = LlmGatewayBench['targets'];

const MODEL = 'bench-model';
/** Streams of this model send the same chunks without pacing: for time to first byte. */
const QUICK_MODEL = 'bench-model-quick';
const UPSTREAM_KEY = 'sk-bench';
const CONTENT = 'Hello from the bench upstream';
/**
 * The bench user's plan here: every LLM limit enforced and counted (LLM calls per hour, and the
 * token budget reserved and settled on every call), none ever reached.
 */
const LLM_PLAN = {
  name: 'llm-bench',
  requests_per_hour: 1_000_000_000_000,
  llm_requests_per_hour: 1_000_000_000_000,
  tokens_per_month: 1_000_000_000_000,
  max_tokens_per_request: 1_000,
};

/**
 * The same body both ways. Streams ask for the usage chunk themselves: Gatehouse asks for it on
 * every stream anyway, so direct and through Gatehouse the upstream sends the same stream.
 */
const requestBody = (model: string, stream: boolean) =>
  JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'Say hello' }],
    max_tokens: 50,
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });

interface Side {
  name: 'direct' | 'pass-through' | 'gatehouse';
  url: string;
  headers: Record<string, string>;
}

/**
 * One call of each kind each way before anything is measured: 200, the upstream's answer, and
 * through Gatehouse the plan's LLM limits counted (x-ratelimit-* headers) and the stream ending
 * with a usage chunk and [DONE]. A wrong setup fails here rather than measuring errors.
 */
async function check(side: Side): Promise<void> {
  const send = async (body: string) => {
    const response = await fetch(side.url, { method: 'POST', headers: side.headers, body });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${side.name} ${side.url}: ${response.status} ${text.slice(0, 300)}`);
    return { response, text };
  };
  const { response, text } = await send(requestBody(MODEL, false));
  const answer = JSON.parse(text) as { choices?: { message?: { content?: string } }[] };
  if (answer.choices?.[0]?.message?.content !== CONTENT) {
    throw new Error(`${side.name}: unexpected answer ${text.slice(0, 300)}`);
  }
  if (side.name === 'gatehouse') {
    const requests = response.headers.get('x-ratelimit-limit-requests');
    const tokens = response.headers.get('x-ratelimit-limit-tokens');
    if (requests !== String(LLM_PLAN.llm_requests_per_hour) || tokens !== String(LLM_PLAN.tokens_per_month)) {
      throw new Error(`gatehouse: LLM limits not counted (x-ratelimit-limit-requests ${requests}, -tokens ${tokens})`);
    }
  }
  for (const model of [MODEL, QUICK_MODEL]) {
    const streamed = await send(requestBody(model, true));
    const type = streamed.response.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream') || !/"usage":\{[^}]+\}\}\n\ndata: \[DONE\]\n\n$/.test(streamed.text)) {
      throw new Error(`${side.name} stream of ${model}: ${type}, ${streamed.text.slice(-300)}`);
    }
  }
}

/** The provider, the plan and the bench user on it, as the operator. */
async function setUp(baseUrl: string, f: Fixtures, upstreamBase: string): Promise<void> {
  await call(baseUrl, 'POST', '/api/admin/plans', LLM_PLAN, 201, f.adminToken);
  await call(baseUrl, 'PUT', `/api/admin/users/${f.userId}/plan`, { plan: LLM_PLAN.name }, 200, f.adminToken);
  const provider = { name: 'bench', base_url: upstreamBase, api_key: UPSTREAM_KEY, models: [MODEL, QUICK_MODEL] };
  await call(baseUrl, 'POST', '/api/admin/llm/providers', provider, 201, f.adminToken);
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const round = (ms: number) => Math.round(ms * 100) / 100;

/**
 * The gateway scenarios against one fake upstream, directly and through Gatehouse, interleaved
 * (direct, gatehouse, direct; the directs averaged) where the machine's drift could favour a side.
 */
export async function llmGateway(
  ctx: LlmContext,
  settings: LlmSettings,
  targets: LlmTargets,
): Promise<LlmGatewayBench['outcome']> {
  const { say } = ctx;
  const port = await freePort();
  const upstreamBase = `http://127.0.0.1:${port}/v1`;
  say(
    `LLM gateway: fake upstream on 127.0.0.1:${port} (${settings.chunks} chunks ${settings.intervalMs} ms apart per stream), ` +
      'a Gatehouse with it as provider (its output: .bench/server-llm.log)',
  );
  const upstream = startNode(join(ctx.root, 'bench/upstream.ts'), {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(port),
      CHUNKS: String(settings.chunks),
      CHUNK_INTERVAL_MS: String(settings.intervalMs),
      QUICK_MODEL,
    },
  });
  let passthrough: ReturnType<typeof startNode> | undefined;
  let upstreamLog = '';
  upstream.stderr?.on('data', (chunk) => {
    upstreamLog = (upstreamLog + chunk).slice(-2000);
  });
  try {
    await waitForOk(`http://127.0.0.1:${port}/healthz`, upstream, 30_000);
    const proxyPort = await freePort();
    passthrough = startNode(join(ctx.root, 'bench/passthrough.ts'), {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(proxyPort), UPSTREAM: upstreamBase },
    });
    await waitForOk(`http://127.0.0.1:${proxyPort}/healthz`, passthrough, 30_000);
    return await withGatehouse(
      ctx,
      'llm',
      { OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' },
      async ({ baseUrl, setupToken }) => {
        const f = await createFixtures(baseUrl, await setupToken, { crowd: false });
        await setUp(baseUrl, f, upstreamBase);
        const json = { 'content-type': 'application/json' };
        const direct: Side = {
          name: 'direct',
          url: `${upstreamBase}/chat/completions`,
          headers: { ...json, authorization: `Bearer ${UPSTREAM_KEY}` },
        };
        const gatehouse: Side = {
          name: 'gatehouse',
          url: `${baseUrl}/api/llm/v1/chat/completions`,
          headers: { ...json, authorization: `Bearer ${f.apiKey}` },
        };
        const proxy: Side = {
          ...direct,
          name: 'pass-through',
          url: `http://127.0.0.1:${proxyPort}/v1/chat/completions`,
        };
        await check(direct);
        await check(proxy);
        await check(gatehouse);
        const readyz = async (after: string) =>
          ctx.readyz.push({ after: `LLM: ${after}`, status: await probe(`${baseUrl}/readyz`, 3_000) });

        say('  non-streaming throughput (direct, pass-through proxy, gatehouse, direct):');
        const loadRun = (side: Side) =>
          ctx.load(`${side.name} POST chat/completions`, {
            url: side.url,
            method: 'POST',
            headers: side.headers,
            body: requestBody(MODEL, false),
            connections: ctx.connections,
          } satisfies Omit<LoadSpec, 'warmupSeconds' | 'seconds'>);
        const loads: LoadResult[] = [await loadRun(direct)];
        const loadProxy = await loadRun(proxy);
        const loadThrough = await loadRun(gatehouse);
        await readyz('non-streaming throughput');
        loads.push(await loadRun(direct));
        const directRps = mean(loads.map((r) => r.rps));
        const rpsRatio = loadThrough.rps / directRps;

        const { warmup, count } = settings.latency;
        say(`  one request in flight, non-streaming: ${warmup} warmup + ${count} each (direct, gatehouse, direct)`);
        const sequential = (side: Side) =>
          runJson<SequentialResult>(
            join(ctx.root, 'bench/sequential.ts'),
            {
              url: side.url,
              method: 'POST',
              headers: side.headers,
              body: requestBody(MODEL, false),
              warmup,
              count,
              timeoutMs: ctx.requestTimeoutMs,
            } satisfies SequentialSpec,
            120_000,
          );
        const sequentialDirect = [await sequential(direct)];
        const sequentialThrough = await sequential(gatehouse);
        sequentialDirect.push(await sequential(direct));
        await readyz('one request in flight');
        const directP50 = mean(sequentialDirect.map((r) => r.p50));
        const addedP50 = sequentialThrough.p50 - directP50;

        const streams = (side: Side, model: string, run: { warmup: number; count: number }, intervalMs: number) =>
          runJson<StreamResult>(
            join(ctx.root, 'bench/stream.ts'),
            {
              url: side.url,
              headers: side.headers,
              body: requestBody(model, true),
              warmup: run.warmup,
              count: run.count,
              timeoutMs: ctx.requestTimeoutMs,
              chunks: settings.chunks,
              intervalMs,
            } satisfies StreamSpec,
            180_000,
          );
        say(
          `  streaming time to first byte (${QUICK_MODEL}: chunks unpaced): ${settings.ttfb.warmup} warmup + ` +
            `${settings.ttfb.count} streams each (direct, gatehouse, direct)`,
        );
        const ttfbDirect = [await streams(direct, QUICK_MODEL, settings.ttfb, 0)];
        const ttfbThrough = await streams(gatehouse, QUICK_MODEL, settings.ttfb, 0);
        ttfbDirect.push(await streams(direct, QUICK_MODEL, settings.ttfb, 0));
        await readyz('streaming time to first byte');
        const directTtfb = mean(ttfbDirect.map((r) => r.ttfb.p50));
        const addedTtfb = ttfbThrough.ttfb.p50 - directTtfb;

        say(
          `  streaming, chunks ${settings.intervalMs} ms apart: ${settings.paced.warmup} warmup + ${settings.paced.count} ` +
            'streams each (direct, gatehouse)',
        );
        const pacedDirect = await streams(direct, MODEL, settings.paced, settings.intervalMs);
        const pacedThrough = await streams(gatehouse, MODEL, settings.paced, settings.intervalMs);
        await readyz('paced streams');

        const allOk = (codes: Record<string, number>) => Object.keys(codes).every((code) => code === '200');
        const streamsOk = (r: StreamResult) => allOk(r.statusCodes) && r.malformed === 0;
        const gaps = pacedThrough.gaps;
        const bunchedShare = gaps ? gaps.bunched / gaps.count : null;
        return {
          status: 'measured' as const,
          throughput: {
            direct: loads,
            gatehouse: loadThrough,
            directRps,
            ratio: rpsRatio,
            passthrough: loadProxy,
            passthroughRatio: loadProxy.rps / directRps,
            met: loadThrough.non2xx === 0 && loadThrough.ok > 0 && rpsRatio >= targets.rpsRatio,
          },
          latency: {
            direct: sequentialDirect,
            gatehouse: sequentialThrough,
            directP50: round(directP50),
            directP99: round(mean(sequentialDirect.map((r) => r.p99))),
            addedP50: round(addedP50),
            met:
              [...sequentialDirect, sequentialThrough].every((r) => allOk(r.statusCodes)) &&
              addedP50 <= targets.addedP50Ms,
          },
          ttfb: {
            direct: ttfbDirect,
            gatehouse: ttfbThrough,
            directP50: round(directTtfb),
            directP99: round(mean(ttfbDirect.map((r) => r.ttfb.p99))),
            addedP50: round(addedTtfb),
            met: [...ttfbDirect, ttfbThrough].every(streamsOk) && addedTtfb <= targets.addedTtfbMs,
          },
          paced: {
            direct: pacedDirect,
            gatehouse: pacedThrough,
            gapMet:
              streamsOk(pacedDirect) &&
              streamsOk(pacedThrough) &&
              gaps !== null &&
              gaps.p50 >= targets.gapShare * settings.intervalMs,
            bunchedMet:
              streamsOk(pacedDirect) &&
              streamsOk(pacedThrough) &&
              bunchedShare !== null &&
              bunchedShare <= targets.bunchedShare,
          },
        };
      },
    );
  } catch (error) {
    if (upstreamLog) say(`fake upstream's output:\n${upstreamLog}`);
    return failed(say, 'LLM gateway', error);
  } finally {
    if (passthrough) await stopChild(passthrough);
    await stopChild(upstream);
  }
}
