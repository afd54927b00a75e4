import { Type } from '@sinclair/typebox';
import { Nullable, NullableTimestamp, Timestamp } from '../../http/schemas.js';

export const KeyLimitFields = {
  requests_per_hour: Nullable(Type.Integer({ minimum: 1, maximum: 1_000_000_000 }), {
    description: "This key's own limit, counted over its requests only, on top of the owner's plan; null = the plan's",
  }),
  llm_requests_per_hour: Nullable(Type.Integer({ minimum: 1, maximum: 1_000_000_000 }), {
    description: "This key's own LLM-call limit, on top of the owner's plan; null = the plan's",
  }),
};

export const ApiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  start: Type.String({ description: 'The first characters, to recognise the key; never the key' }),
  scopes: Type.Array(Type.String()),
  created_at: Timestamp,
  last_used_at: NullableTimestamp,
  expires_at: NullableTimestamp,
  ...KeyLimitFields,
});

/** A key with its secret, in the one response that shows it. */
export const IssuedApiKey = Type.Composite([
  ApiKey,
  Type.Object({ key: Type.String({ description: 'The secret: shown this once, never again' }) }),
]);
