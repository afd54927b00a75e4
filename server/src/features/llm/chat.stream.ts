import { once } from 'node:events';
import { createParser } from 'eventsource-parser';
import type { FastifyReply } from 'fastify';
import type { Deps } from '../../deps.js';
import type { UserPrincipal } from '../../http/principal.js';
import { type ChatRequest, startCall } from './chat.service.js';
import { countTokens } from './tokens.js';
import type { UpstreamUsage } from './upstream.js';

interface Chunk {
  id?: string;
  created?: number;
  model?: string;
  choices?: { delta?: { content?: unknown } }[];
  usage?: UpstreamUsage | null;
}

/**
 * POST /api/llm/v1/chat/completions with `stream: true`: server-sent events exactly as OpenAI
 * sends them, forwarded event by event as they arrive. The stream always ends with a usage chunk
 * (`choices: []`) before `data: [DONE]`: the provider's, asked for with `stream_options`, or one
 * counted with the tokenizer when the provider sends none. If the provider's stream breaks, the
 * client gets an error event and no [DONE] (never a clean finish), and what was used so far is
 * charged; if the client goes away, the provider call is aborted and the same is charged.
 */
export async function streamChatCompletion(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<void> {
  const { target, key, response, promptEstimate, settle } = await startCall(deps, principal, body, reply, clientGone);
  const provider = target.provider;
  if (response.statusCode < 200 || response.statusCode >= 300) {
    // The provider refused the request itself (4xx): its error goes back as JSON, nothing charged.
    const text = await response.body.text().catch(() => '');
    await settle(0, 0, 'rejected');
    reply.status(response.statusCode).type('application/json');
    reply.send(text.replaceAll(key, '[redacted]'));
    return;
  }

  reply.hijack();
  const out = reply.raw;
  out.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-gatehouse-provider': provider.name,
  });
  let completionText = '';
  let usage: UpstreamUsage | undefined;
  let last: Chunk = {};
  let done = false;
  let mustDrain = false;
  const send = (data: string) => {
    if (!out.write(`data: ${data}\n\n`)) mustDrain = true;
  };
  const parser = createParser({
    onEvent(event) {
      if (event.data === '[DONE]') {
        done = true; // held back: the usage chunk comes first
        return;
      }
      try {
        const chunk = JSON.parse(event.data) as Chunk;
        last = chunk;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices ?? []) {
          if (typeof choice.delta?.content === 'string') completionText += choice.delta.content;
        }
      } catch {
        // Not JSON: still forwarded as it came.
      }
      send(event.data.replaceAll(key, '[redacted]'));
    },
  });

  let broken = false;
  try {
    const decoder = new TextDecoder();
    for await (const chunk of response.body) {
      parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
      if (mustDrain && !out.destroyed) {
        mustDrain = false;
        await once(out, 'drain', { signal: clientGone });
      }
    }
  } catch {
    broken = true;
  }
  const promptTokens = usage?.prompt_tokens ?? promptEstimate;
  const completionTokens = usage?.completion_tokens ?? (await countTokens(completionText));
  if (clientGone.aborted) {
    response.body.destroy();
    await settle(promptEstimate, await countTokens(completionText), 'cancelled');
    out.destroy();
    return;
  }
  if (broken || !done) {
    await settle(promptTokens, completionTokens, 'interrupted');
    deps.log.warn({ provider: provider.name }, 'LLM provider stream broke off');
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
  if (!usage) {
    send(
      JSON.stringify({
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
      }),
    );
  }
  await settle(promptTokens, completionTokens, 'ok');
  send('[DONE]');
  out.end();
}
