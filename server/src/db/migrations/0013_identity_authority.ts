import { type Kysely, sql } from 'kysely';

// Social sign-in (ADR 0013): an external identity is a subject *as asserted by* the endpoints
// that established it (OpenID Connect Core §5.7: iss and sub together). `authority` records them
// at link time, so that repointing a provider at another server does not inherit the accounts
// linked through the old one. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('user_identities').addColumn('authority', 'text').execute();
  // Existing links were made through their provider as it is configured now.
  await sql`
    update user_identities set authority = (
      select coalesce(p.issuer, '') || ' ' || p.token_endpoint || ' ' || coalesce(p.userinfo_endpoint, '')
      from oauth_providers p where p.id = user_identities.provider_id
    )`.execute(db);
}
