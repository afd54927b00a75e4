import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { userOf } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { type ChatRequest, chatCompletion } from './chat.service.js';
import { streamChatCompletion } from './chat.stream.js';

const ChatBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200 }),
    messages: Type.Array(
      Type.Object({ role: Type.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: true }),
      { minItems: 1, maxItems: 10_000 },
    ),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    max_completion_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    stream: Type.Optional(Type.Boolean()),
  },
  {
    additionalProperties: true,
    description: "OpenAI's chat completion request; other fields go to the provider as sent",
  },
);

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
        response: { ...errors(400, 401, 404, 429, 502) },
      },
    },
    async (request, reply) => {
      // A client that goes away cancels the provider call (and its charge is only what was used).
      const gone = new AbortController();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) gone.abort();
      });
      const body = request.body as ChatRequest;
      if (body.stream === true) {
        await streamChatCompletion(deps, userOf(request), body, reply, gone.signal);
        return reply;
      }
      return chatCompletion(deps, userOf(request), body, reply, gone.signal);
    },
  );
}
