import { once } from 'node:events';
import { createParser } from 'eventsource-parser';
import type { FastifyReply } from 'fastify';
import type { Deps } from '../../deps.js';
import type { UserPrincipal } from '../../http/principal.js';
import { type Call, type ChatRequest, type Settled, startCall } from './chat.service.js';
import { countTokens } from './tokens.js';
import type { UpstreamUsage } from './upstream.js';

export interface Chunk {
  id?: string;
  created?: number;
  model?: string;
  choices?: { delta?: { content?: unknown }; finish_reason?: string | null }[];
  usage?: UpstreamUsage | null;
}

/** Where a relayed stream goes: an HTTP response (SSE) or a realtime socket. */
export interface StreamSink {
  /** One event's data as the provider sent it (key scrubbed) and the chunk it parsed to; false: wait for `drained`. */
  event(data: string, chunk: Chunk | undefined): boolean;
  drained(signal: AbortSignal): Promise<unknown>;
}

/** How a relayed stream ended, and what was charged for it. */
export interface Relayed {
  outcome: 'ok' | 'interrupted' | 'cancelled';
  promptTokens: number;
  completionTokens: number;
  /** The provider sent its own usage chunk. */
  providerUsage: boolean;
  /** The last chunk, for the id and model of a usage chunk made here. */
  last: Chunk;
  text: string;
  finishReason: string | null;
  settled: Settled;
}

/**
 * Forwards a provider's stream event by event as it arrives, then settles the reservation: with
 * the provider's usage, or the tokenizer's count when it sends none. A stream that breaks off
 * (or never says [DONE]) is settled as `interrupted` with what was used so far; a client that
 * went away aborts the provider call and is charged the same way, as `cancelled`.
 */
export async function relayStream(deps: Deps, call: Call, sink: StreamSink, clientGone: AbortSignal): Promise<Relayed> {
  const { key, response, promptEstimate, settle } = call;
  let text = '';
  let usage: UpstreamUsage | undefined;
  let last: Chunk = {};
  let finishReason: string | null = null;
  let done = false;
  let mustDrain = false;
  const parser = createParser({
    onEvent(event) {
      if (event.data === '[DONE]') {
        done = true; // held back: the usage chunk comes first
        return;
      }
      let chunk: Chunk | undefined;
      try {
        chunk = JSON.parse(event.data) as Chunk;
        last = chunk;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices ?? []) {
          if (typeof choice.delta?.content === 'string') text += choice.delta.content;
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
      } catch {
        // Not JSON: still forwarded as it came.
      }
      if (!sink.event(event.data.replaceAll(key, '[redacted]'), chunk)) mustDrain = true;
    },
  });

  let broken = false;
  try {
    const decoder = new TextDecoder();
    for await (const chunk of response.body) {
      parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
      if (mustDrain) {
        mustDrain = false;
        await sink.drained(clientGone);
      }
    }
  } catch {
    broken = true;
  }
  const ended = (outcome: Relayed['outcome'], promptTokens: number, completionTokens: number, settled: Settled) => ({
    outcome,
    promptTokens,
    completionTokens,
    providerUsage: usage !== undefined,
    last,
    text,
    finishReason,
    settled,
  });
  if (clientGone.aborted) {
    response.body.destroy();
    const completionTokens = await countTokens(text);
    return ended(
      'cancelled',
      promptEstimate,
      completionTokens,
      await settle(promptEstimate, completionTokens, 'cancelled'),
    );
  }
  const promptTokens = usage?.prompt_tokens ?? promptEstimate;
  const completionTokens = usage?.completion_tokens ?? (await countTokens(text));
  if (broken || !done) {
    deps.log.warn({ provider: call.target.provider.name }, 'LLM provider stream broke off');
    return ended(
      'interrupted',
      promptTokens,
      completionTokens,
      await settle(promptTokens, completionTokens, 'interrupted'),
    );
  }
  return ended('ok', promptTokens, completionTokens, await settle(promptTokens, completionTokens, 'ok'));
}

/**
 * POST /api/llm/v1/chat/completions with `stream: true`: server-sent events exactly as OpenAI
 * sends them, forwarded as they arrive (`relayStream`). The stream always ends with a usage chunk
 * (`choices: []`) before `data: [DONE]`: the provider's, asked for with `stream_options`, or one
 * counted with the tokenizer when the provider sends none. If the provider's stream breaks, the
 * client gets an error event and no [DONE] (never a clean finish).
 */
export async function streamChatCompletion(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<void> {
  const call = await startCall(deps, principal, body, reply, clientGone);
  try {
    await answerStream(deps, call, body, reply, clientGone);
  } finally {
    call.abandon();
  }
}

/** streamChatCompletion once a provider answered. */
async function answerStream(
  deps: Deps,
  call: Call,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<void> {
  const { key, response } = call;
  const provider = call.target.provider;
  if (response.statusCode < 200 || response.statusCode >= 300) {
    // The provider refused the request itself (4xx): its error goes back as JSON, nothing charged.
    const text = await response.body.text().catch(() => '');
    await call.settle(0, 0, 'rejected');
    reply.status(response.statusCode).type('application/json');
    reply.send(text.replaceAll(key, '[redacted]'));
    return;
  }

  reply.hijack();
  const out = reply.raw;
  // Set one by one, not passed to writeHead: so they stay readable on the response (the shutdown
  // deadline looks for text/event-stream to end the stream with an error event).
  const headers = {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-gatehouse-provider': provider.name,
  };
  for (const [name, value] of Object.entries(headers)) out.setHeader(name, value);
  out.writeHead(200);
  const send = (data: string) => out.write(`data: ${data}\n\n`);
  const relayed = await relayStream(
    deps,
    call,
    {
      event: (data) => send(data),
      drained: (signal) => (out.destroyed ? Promise.resolve() : once(out, 'drain', { signal })),
    },
    clientGone,
  );
  if (relayed.outcome === 'cancelled') {
    out.destroy();
    return;
  }
  if (relayed.outcome === 'interrupted') {
    send(
      JSON.stringify({
        error: {
          message: `The provider's stream broke off (${provider.name}); the answer is incomplete`,
          type: 'upstream_error',
          code: 'upstream_interrupted',
        },
      }),
    );
    out.end();
    return;
  }
  if (!relayed.providerUsage) send(JSON.stringify(usageChunk(relayed, body)));
  send('[DONE]');
  out.end();
}

/** The usage chunk OpenAI ends a stream with, made here when the provider sent none. */
function usageChunk(relayed: Relayed, body: ChatRequest) {
  const { last, promptTokens, completionTokens } = relayed;
  return {
    id: last.id,
    object: 'chat.completion.chunk',
    created: last.created ?? Math.floor(Date.now() / 1000),
    model: last.model ?? body.model,
    choices: [],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}
