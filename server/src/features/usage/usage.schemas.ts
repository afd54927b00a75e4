import { Type } from '@sinclair/typebox';
import { Nullable, Timestamp } from '../../http/schemas.js';

/** Seed 001's token fields: the user's budget in the current period. */
export const TokenBudget = Type.Object(
  {
    period_start: Timestamp,
    period_end: Timestamp,
    monthly_limit: Type.Union([Type.Integer(), Type.Null()], {
      description: "The plan's token budget for the period; null = unlimited",
    }),
    tokens_used: Type.Integer(),
    tokens_reserved: Type.Integer({ description: 'Held by calls in flight' }),
    tokens_remaining: Type.Union([Type.Integer(), Type.Null()], { description: 'null = unlimited' }),
  },
  { $id: 'TokenBudget' },
);

const Sums = {
  requests: Type.Integer(),
  llm_requests: Type.Integer(),
  errors: Type.Integer(),
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  total_tokens: Type.Integer(),
  cost_usd: Type.Number(),
};

const LimitNow = Nullable(Type.Object({ limit: Type.Integer(), remaining: Type.Integer(), reset_at: Timestamp }));

export const UsageSummary = Type.Composite([
  Type.Object({ plan: Type.String() }),
  TokenBudget,
  Type.Object({
    limits: Type.Object({
      requests_per_hour: LimitNow,
      llm_requests_per_hour: LimitNow,
      key_requests_per_hour: LimitNow,
      key_llm_requests_per_hour: LimitNow,
      max_tokens_per_request: Nullable(Type.Integer()),
      max_prompt_tokens_per_request: Nullable(Type.Integer()),
    }),
    totals: Type.Object(Sums),
    daily: Type.Array(Type.Object({ date: Type.String({ format: 'date' }), ...Sums })),
  }),
]);

export const TenantUsage = Type.Object({
  from: Timestamp,
  to: Timestamp,
  granularity: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
  totals: Type.Object(Sums),
  by_user: Type.Array(Type.Object({ user_id: Type.String(), ...Sums })),
  by_model: Type.Array(Type.Object({ model: Type.String(), ...Sums })),
  series: Type.Array(Type.Object({ bucket_start: Timestamp, ...Sums })),
});

export const Reservation = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  tokens: Type.Integer(),
  expires_at: Timestamp,
  budget: Type.Ref(TokenBudget),
});

export const SettleBody = Type.Object(
  {
    prompt_tokens: Type.Integer({ minimum: 0, maximum: 100_000_000 }),
    completion_tokens: Type.Integer({ minimum: 0, maximum: 100_000_000 }),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    cost_usd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000 })),
    latency_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
    status: Type.Optional(Type.String({ pattern: '^[a-z_]{1,32}$', description: "'ok' (default) or what went wrong" })),
  },
  { additionalProperties: false },
);
