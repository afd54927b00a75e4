import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { Deps } from '../../deps.js';
import { userOf } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { type ChatRequest, chatCompletion, simpleCompletion } from './chat.service.js';
import { streamChatCompletion } from './chat.stream.js';
import { openaiErrorShape, openaiErrors } from './openai-errors.js';

const ChatBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200 }),
    messages: Type.Array(
      Type.Object({ role: Type.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: true }),
      { minItems: 1, maxItems: 10_000 },
    ),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    max_completion_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    // OpenAI's own bound; each answer may use max_tokens, so n of them are held for.
    n: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
    stream: Type.Optional(Type.Boolean()),
  },
  {
    additionalProperties: true,
    description: "OpenAI's chat completion request; other fields go to the provider as sent",
  },
);

const CompletionBody = Type.Object(
  {
    prompt: Type.String({ minLength: 1, maxLength: 1_000_000 }),
    model: Type.String({ minLength: 1, maxLength: 200 }),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    stream: Type.Optional(Type.Boolean({ description: 'true: the same server-sent events as chat completions' })),
  },
  { additionalProperties: false },
);

const Completion = Type.Object({
  id: Type.String(),
  model: Type.String(),
  provider: Type.String(),
  text: Type.String(),
  finish_reason: Type.Union([Type.String(), Type.Null()]),
  usage: Type.Object({
    prompt_tokens: Type.Integer(),
    completion_tokens: Type.Integer(),
    total_tokens: Type.Integer(),
  }),
  cost_usd: Type.Number({ description: "What the call cost at the tenant's prices (0 without a price)" }),
  tokens_remaining: Type.Union([Type.Integer(), Type.Null()], {
    description: 'Left of the token budget after this call',
  }),
});

/** Aborts the provider call when the client goes away before the answer is complete. */
function clientGone(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}

export function registerChatRoutes(app: App, deps: Deps): void {
  app.post(
    '/api/llm/v1/chat/completions',
    {
      config: { auth: ['user'] },
      bodyLimit: 8 * 1_048_576,
      schema: {
        tags: ['llm'],
        summary: "OpenAI-compatible chat completion through the tenant's providers, streaming (SSE) or not",
        body: ChatBody,
        response: { ...openaiErrors(400, 401, 403, 404, 429, 502) },
      },
      preSerialization: openaiErrorShape,
    },
    async (request, reply) => {
      const body = request.body as ChatRequest;
      if (body.stream === true) {
        await streamChatCompletion(deps, userOf(request), body, reply, clientGone(reply));
        return reply;
      }
      return (await chatCompletion(deps, userOf(request), body, reply, clientGone(reply))).text;
    },
  );

  app.post(
    '/api/llm/completion',
    {
      config: { auth: ['user'] },
      bodyLimit: 8 * 1_048_576,
      schema: {
        tags: ['llm'],
        summary: "Seed 001's simple form: a prompt in, the text out, over the same path as chat completions",
        body: CompletionBody,
        response: { 200: Completion, ...errors(400, 401, 403, 404, 429, 502) },
      },
    },
    async (request, reply) => {
      const principal = userOf(request);
      const { prompt, ...rest } = request.body;
      const chat: ChatRequest = { ...rest, messages: [{ role: 'user', content: prompt }] };
      if (chat.stream === true) {
        await streamChatCompletion(deps, principal, chat, reply, clientGone(reply));
        return reply;
      }
      const answered = await chatCompletion(deps, principal, chat, reply, clientGone(reply));
      // The provider's own 4xx as it came: a JSON string, which Fastify sends without serialising
      // (the cast only tells the typed reply that this status is not the 200 schema's).
      if (reply.statusCode !== 200) return reply.send(answered.text as never);
      return simpleCompletion(answered, reply);
    },
  );
}
