import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Migrator } from 'kysely';
import { createDb, migrateToLatest } from './index.js';
import { migrations } from './migrations/index.js';

describe('migrations', () => {
  it('migrate an empty database to head, and again without change', async () => {
    const db = await createDb({ dialect: 'sqlite', filename: ':memory:' });
    try {
      assert.deepEqual(await migrateToLatest(db), Object.keys(migrations));
      assert.deepEqual(await migrateToLatest(db), []);
      const tables = await db.kysely.introspection.getTables();
      for (const name of ['tenants', 'users', 'sessions', 'refresh_tokens', 'api_keys', 'plans', 'audit_events']) {
        assert.ok(
          tables.some((t) => t.name === name),
          name,
        );
      }
    } finally {
      await db.close();
    }
  });

  it("0002 gives tenants that existed before it the seeds' plans, free by default", async () => {
    const db = await createDb({ dialect: 'sqlite', filename: ':memory:' });
    try {
      const migrator = new Migrator({ db: db.kysely, provider: { getMigrations: async () => migrations } });
      assert.equal((await migrator.migrateTo('0001_init')).error, undefined);
      await db.kysely
        .insertInto('tenants')
        .values({
          id: 'ten_old',
          slug: 'old',
          name: 'Old',
          publishable_key: 'pk_old',
          settings: '{}',
          created_at: 1,
          updated_at: 1,
        } as never)
        .execute();
      await migrateToLatest(db);
      const plans = await db.kysely.selectFrom('plans').selectAll().where('tenant_id', '=', 'ten_old').execute();
      assert.deepEqual(plans.map((p) => p.name).sort(), ['enterprise', 'free', 'pro']);
      const tenant = await db.kysely
        .selectFrom('tenants')
        .select('default_plan_id')
        .where('id', '=', 'ten_old')
        .executeTakeFirstOrThrow();
      assert.equal(tenant.default_plan_id, plans.find((p) => p.name === 'free')?.id);
    } finally {
      await db.close();
    }
  });

  it('0013 records the authority of identities linked before it: their provider as configured then', async () => {
    const db = await createDb({ dialect: 'sqlite', filename: ':memory:' });
    try {
      const migrator = new Migrator({ db: db.kysely, provider: { getMigrations: async () => migrations } });
      assert.equal((await migrator.migrateTo('0012_one_active_signing_key')).error, undefined);
      const k = db.kysely as never as import('kysely').Kysely<Record<string, Record<string, unknown>>>;
      await k
        .insertInto('tenants')
        .values({
          id: 'ten_old',
          slug: 'old',
          name: 'Old',
          publishable_key: 'pk_old',
          settings: '{}',
          created_at: 1,
          updated_at: 1,
        })
        .execute();
      await k
        .insertInto('users')
        .values({
          id: 'usr_old',
          tenant_id: 'ten_old',
          email: 'old@example.com',
          role: 'user',
          created_at: 1,
          updated_at: 1,
        })
        .execute();
      await k
        .insertInto('oauth_providers')
        .values({
          id: 'opr_old',
          tenant_id: 'ten_old',
          name: 'acme',
          client_id: 'c',
          issuer: 'https://id.example.com',
          authorization_endpoint: 'https://id.example.com/auth',
          token_endpoint: 'https://id.example.com/token',
          userinfo_endpoint: null,
          scopes: '[]',
          pkce: 1,
          extra_params: '{}',
          created_at: 1,
          updated_at: 1,
        })
        .execute();
      await k
        .insertInto('user_identities')
        .values({
          id: 'idn_old',
          tenant_id: 'ten_old',
          user_id: 'usr_old',
          provider_id: 'opr_old',
          subject: 's',
          email: null,
          created_at: 1,
          last_login_at: 1,
        })
        .execute();
      await migrateToLatest(db);
      const row = await db.kysely
        .selectFrom('user_identities')
        .select('authority')
        .where('id', '=', 'idn_old')
        .executeTakeFirstOrThrow();
      assert.equal(row.authority, 'https://id.example.com https://id.example.com/token ');
    } finally {
      await db.close();
    }
  });
});
