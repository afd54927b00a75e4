import { Command } from 'commander';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig, loadDotEnv } from './config.js';
import { migrateToLatest } from './db/index.js';
import { closeDeps, createDeps, type Deps } from './deps.js';
import { register } from './features/accounts/accounts.service.js';
import { issueSetupToken } from './features/setup/setup.service.js';
import {
  createTenant,
  ensureDefaultTenant,
  getDefaultTenant,
  listTenants,
} from './features/tenants/tenants.service.js';
import { rotateVault } from './features/vault/vault.service.js';
import { SYSTEM_ACTOR } from './http/principal.js';
import { createLogger } from './logger.js';
import { resolveMasterKey } from './master-key-file.js';

/** config → deps → migrate → keys → default tenant: what every command needs. */
async function open(options: { logLevel?: string } = {}): Promise<{ config: Config; log: Logger; deps: Deps }> {
  loadDotEnv();
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const log = createLogger(options.logLevel ?? config.logLevel);
  const deps = await createDeps({ config, log, masterKey: resolveMasterKey(config, log), defaultMetrics: true });
  const applied = await migrateToLatest(deps.db);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
  await deps.keyring.load();
  await ensureDefaultTenant(deps, SYSTEM_ACTOR);
  return { config, log, deps };
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

async function serve(): Promise<void> {
  const { config, log, deps } = await open();
  if (deps.db.dialect === 'sqlite') {
    log.info(
      { dataDir: config.dataDir },
      'embedded SQLite database: one instance only (set DATABASE_URL for PostgreSQL and several instances)',
    );
  }
  const app = await buildApp(deps);
  const setupToken = await issueSetupToken(deps);
  await app.listen({ port: config.port, host: config.host });
  if (setupToken) {
    const body = JSON.stringify({ token: setupToken, email: 'you@example.com', password: '<a long password>' });
    process.stderr.write(
      [
        '',
        '  No operator account yet. Create it once with this one-time setup token',
        `  (valid ${Math.round(config.setupTokenTtlMs / 3_600_000)} h; the first one used, of any start or instance, ends them all):`,
        '',
        `    curl -X POST ${config.publicUrl}/api/setup -H 'content-type: application/json' \\`,
        `      -d '${body}'`,
        '',
        '  or: npx gatehouse operator create --email you@example.com --password-stdin',
        '',
      ].join('\n'),
    );
  }
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => process.exit(1), 10_000).unref();
    await app.close();
    await closeDeps(deps);
    clearTimeout(force);
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Runs a one-shot command with quiet logs and closes the database after it. */
function oneShot(task: (deps: Deps) => Promise<unknown>) {
  return async () => {
    const { deps } = await open({ logLevel: 'warn' });
    try {
      const result = await task(deps);
      if (result !== undefined) print(result);
    } finally {
      await closeDeps(deps);
    }
  };
}

const program = new Command('gatehouse').description('Gatehouse identity and access gateway');
program.command('serve', { isDefault: true }).description('start the HTTP server (migrates first)').action(serve);
program
  .command('migrate')
  .description('apply pending database migrations and exit')
  .action(oneShot(async () => ({ migrated: true })));

const tenant = program.command('tenant').description('manage tenants');
tenant
  .command('create')
  .requiredOption('--name <name>', 'display name')
  .option('--slug <slug>', 'URL-safe id (derived from the name when absent)')
  .action((options: { name: string; slug?: string }) =>
    oneShot(async (deps) => {
      const created = await createTenant(deps, SYSTEM_ACTOR, options);
      return { id: created.id, slug: created.slug, name: created.name, publishable_key: created.publishableKey };
    })(),
  );
tenant.command('list').action(
  oneShot(async (deps) => {
    const page = await listTenants(deps, { limit: 1000 });
    return page.data.map((t) => ({ id: t.id, slug: t.slug, name: t.name, publishable_key: t.publishableKey }));
  }),
);

program
  .command('operator')
  .description('manage operator accounts')
  .command('create')
  .requiredOption('--email <email>', 'operator email')
  .option('--password <password>', 'password (prefer --password-stdin: arguments show up in process lists)')
  .option('--password-stdin', 'read the password from standard input')
  .option('--name <name>', 'display name')
  .action((options: { email: string; password?: string; passwordStdin?: boolean; name?: string }) =>
    oneShot(async (deps) => {
      const password = options.passwordStdin ? await readStdin() : options.password;
      if (!password) throw new Error('Give --password-stdin (or --password)');
      const target = await getDefaultTenant(deps);
      if (!target) throw new Error('The default tenant is missing');
      const result = await register(
        deps,
        target,
        { email: options.email, password, name: options.name },
        { ip: null, userAgent: 'gatehouse-cli' },
        'operator',
      );
      return { operator: result.user };
    })(),
  );

const keys = program.command('keys').description('manage keys');
keys
  .command('rotate-signing')
  .description('add a new JWT signing key; the old one stays published until its tokens expire')
  .action(oneShot(async (deps) => ({ active_kid: await deps.keyring.rotate() })));
keys
  .command('rotate-vault')
  .description(
    'give every tenant a new vault data key and re-encrypt its connections under it, while Gatehouse keeps serving',
  )
  .action(
    oneShot(async (deps) => {
      const { SingleBar, Presets } = await import('cli-progress');
      const bar = new SingleBar(
        {
          format: 're-encrypting connections [{bar}] {value}/{total} {percentage}% eta {eta}s',
          stream: process.stderr,
        },
        Presets.shades_classic,
      );
      const result = await rotateVault(deps, { start: (total) => bar.start(total, 0), tick: () => bar.increment() });
      bar.stop();
      // Each one is logged with its tenant; they stay readable by nobody until restored from a backup.
      if (result.failed.length > 0) process.exitCode = 1;
      return result;
    }),
  );

program.parseAsync().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`gatehouse: ${message}\n`);
  process.exit(1);
});
