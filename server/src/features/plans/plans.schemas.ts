import { Type } from '@sinclair/typebox';
import { Nullable, Timestamp } from '../../http/schemas.js';

const Limit = (description: string) =>
  Nullable(Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }), {
    description: `${description}; null = unlimited`,
  });

export const limitFields = {
  requests_per_hour: Limit('Authenticated API requests per hour'),
  llm_requests_per_hour: Limit('LLM calls per hour'),
  max_tokens_per_request: Limit('Largest max_tokens one LLM call may ask for'),
  max_prompt_tokens_per_request: Limit(
    'Largest prompt one LLM call may send, in tokens (counted as the gateway counts them)',
  ),
  tokens_per_month: Limit('LLM token budget per period (a calendar month in UTC unless token_period says otherwise)'),
  token_period: Type.Union([Type.Literal('month'), Type.Literal('week'), Type.Literal('day')], {
    description: 'When the token budget resets: calendar month, ISO week (Monday) or day, in UTC',
  }),
  allowed_models: Nullable(
    Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 500, uniqueItems: false }),
    {
      description:
        'Public model names the plan may call through the LLM gateway (a trailing * matches a prefix, e.g. gpt-4o*); null = every model',
    },
  ),
};

export const Plan = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    ...limitFields,
    default: Type.Boolean({ description: 'New users, and users without a plan of their own, are on this plan' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Plan' },
);

export const PlanName = Type.String({
  pattern: '^[a-z0-9][a-z0-9_-]{0,47}$',
  description: 'lowercase letters, digits, - and _',
});
