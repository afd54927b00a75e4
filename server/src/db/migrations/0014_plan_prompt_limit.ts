import type { Kysely } from 'kysely';

// The plans' bound on one LLM call's prompt, in tokens (ADR 0014). Plans that exist keep no bound
// (null) until an admin sets one; new tenants' default plans come with one. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('plans').addColumn('max_prompt_tokens_per_request', 'bigint').execute();
}
