import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import type { UserPrincipal } from '../../http/principal.js';
import { type Call, type ChatRequest, startCall, usd } from '../llm/chat.service.js';
import { relayStream } from '../llm/chat.stream.js';
import { errorMessage, type FeedConnection, outMessage } from './connection.js';

/** LLM calls one connection may have running at once. */
const MAX_IN_FLIGHT = 4;
const inFlight = new WeakMap<FeedConnection, number>();

/** Fields of a `request` that go to the provider, besides `model`, the prompt and `max_tokens`. */
const PASSED = ['temperature', 'top_p', 'stop', 'seed'] as const;

/**
 * A `request`'s data, checked field by field as the HTTP routes' bodies are (the bounds of
 * POST /api/llm/v1/chat/completions and /api/llm/completion); anything else is refused by name.
 */
const RequestData = TypeCompiler.Compile(
  Type.Object(
    {
      action: Type.Optional(Type.Literal('llm.completion')),
      model: Type.String({ minLength: 1, maxLength: 200 }),
      prompt: Type.Optional(Type.String({ minLength: 1, maxLength: 1_000_000 })),
      messages: Type.Optional(
        Type.Array(
          Type.Object({ role: Type.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: true }),
          {
            minItems: 1,
            maxItems: 10_000,
          },
        ),
      ),
      max_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
      // OpenAI's ranges for the sampling fields.
      temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
      top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      stop: Type.Optional(
        Type.Union([Type.String({ maxLength: 1_000 }), Type.Array(Type.String({ maxLength: 1_000 }), { maxItems: 4 })]),
      ),
      seed: Type.Optional(Type.Integer()),
    },
    { additionalProperties: false },
  ),
);

/**
 * A `request` message: `{type: 'request', correlationId, data: {model, prompt | messages,
 * max_tokens?, temperature?, …}}` runs a chat completion through the LLM gateway, with the same
 * checks and accounting as POST /api/llm/v1/chat/completions. Its text arrives as `update`s
 * (`{kind: 'completion', delta}`) and ends with `complete` (text, usage, cost), or `error`,
 * all carrying the request's correlationId.
 */
export async function handleRequest(deps: Deps, connection: FeedConnection, data: unknown, correlationId?: string) {
  if (correlationId === undefined) {
    connection.send(
      errorMessage(invalidField('correlationId', 'is required on a request: a string of 1 to 128 characters')),
    );
    return;
  }
  const running = inFlight.get(connection) ?? 0;
  if (running >= MAX_IN_FLIGHT) {
    connection.send(
      errorMessage(
        new AppError('rate_limited', `At most ${MAX_IN_FLIGHT} requests may run at once on one connection`),
        correlationId,
      ),
    );
    return;
  }
  // Counted before the first await, so a burst of requests cannot all pass the check above.
  inFlight.set(connection, running + 1);
  try {
    const body = chatRequestOf(data);
    // The credential as it is now (a call spends the user's budget), not as it was at connect.
    if (!(await connection.recheck())) return;
    await complete(deps, connection, connection.principal as UserPrincipal, body, correlationId);
  } catch (error) {
    // Internal causes are logged, never sent (errorMessage sends internal_error for them).
    if (!(error instanceof AppError) || error.status >= 500) {
      deps.log.error({ err: error }, 'realtime: an LLM request failed');
    }
    if (!connection.gone.signal.aborted) connection.send(errorMessage(error, correlationId));
  } finally {
    inFlight.set(connection, (inFlight.get(connection) ?? 1) - 1);
  }
}

function chatRequestOf(data: unknown): ChatRequest {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw invalidField('data', 'must be an object: {model, prompt} or {model, messages}');
  }
  const problem = RequestData.Errors(data).First();
  if (problem) {
    const field = `data${problem.path.replaceAll('/', '.')}`;
    throw invalidField(field, problem.message.charAt(0).toLowerCase() + problem.message.slice(1));
  }
  const fields = data as Record<string, unknown>;
  let messages: ChatRequest['messages'];
  if (typeof fields.prompt === 'string' && fields.messages === undefined) {
    messages = [{ role: 'user', content: fields.prompt }];
  } else if (Array.isArray(fields.messages) && fields.prompt === undefined) {
    messages = fields.messages as ChatRequest['messages'];
  } else {
    throw invalidField('data.prompt', 'or data.messages (not both) is required');
  }
  const body: ChatRequest = {
    model: fields.model as string,
    messages,
    stream: true,
    max_tokens: fields.max_tokens as number | undefined,
  };
  for (const field of PASSED) if (fields[field] !== undefined) body[field] = fields[field];
  return body;
}

async function complete(
  deps: Deps,
  connection: FeedConnection,
  principal: UserPrincipal,
  body: ChatRequest,
  correlationId: string,
) {
  const signal = connection.gone.signal;
  const call = await startCall(deps, principal, body, { header: () => undefined }, signal);
  try {
    await answerOnSocket(deps, connection, call, body, correlationId, signal);
  } finally {
    call.abandon();
  }
}

/** `complete` once a provider answered: the deltas as updates, then the usage and cost. */
async function answerOnSocket(
  deps: Deps,
  connection: FeedConnection,
  call: Call,
  body: ChatRequest,
  correlationId: string,
  signal: AbortSignal,
) {
  const provider = call.target.provider.name;
  if (call.response.statusCode < 200 || call.response.statusCode >= 300) {
    const text = await call.response.body.text().catch(() => '');
    await call.settle(0, 0, 'rejected');
    throw new AppError('upstream_unavailable', `${provider} refused the request (${call.response.statusCode})`, {
      details: {
        status: call.response.statusCode,
        provider_error: text.replaceAll(call.key, '[redacted]').slice(0, 2_000),
      },
    });
  }
  const relayed = await relayStream(
    deps,
    call,
    {
      event(_data, chunk) {
        const delta = chunk?.choices?.[0]?.delta?.content;
        if (typeof delta === 'string' && delta.length > 0) {
          connection.send(outMessage('update', { kind: 'completion', delta }, correlationId));
        }
        return true;
      },
      drained: () => Promise.resolve(),
    },
    signal,
  );
  if (relayed.outcome === 'cancelled') return;
  if (relayed.outcome === 'interrupted') {
    throw new AppError(
      'upstream_unavailable',
      `The provider's stream broke off (${provider}); the answer is incomplete`,
      {
        details: { reason: 'upstream_interrupted', text: relayed.text },
      },
    );
  }
  const { promptTokens, completionTokens, settled } = relayed;
  connection.send(
    outMessage(
      'complete',
      {
        kind: 'completion',
        id: relayed.last.id ?? null,
        model: body.model,
        provider,
        text: relayed.text,
        finish_reason: relayed.finishReason,
        usage: {
          prompt_tokens: promptTokens,
          completion_tokens: completionTokens,
          total_tokens: promptTokens + completionTokens,
        },
        cost_usd: Number(usd(settled.costMicros)),
        tokens_remaining: settled.budget.remaining,
      },
      correlationId,
    ),
  );
}
