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
import { startManagementServer } from './http/metrics.js';
import { SYSTEM_ACTOR } from './http/principal.js';
import { closeGracefully, installProcessPolicy, trackResponses } from './lifecycle.js';
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
  const responses = trackResponses(app.server);
  const setupToken = await issueSetupToken(deps);
  await app.listen({ port: config.port, host: config.host });
  const management = config.metrics.port ? await startManagementServer(app, deps, config.metrics.port) : undefined;
  if (management) log.info({ url: management.url }, 'management port: /metrics, /healthz, /readyz');
  else if (!config.metrics.token) log.info('/metrics is off: set METRICS_TOKEN or METRICS_PORT to serve it');
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
  let stopping = false;
  const shutdown = (reason: string, exitCode: 0 | 1) => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      log.info({ reason, timeoutMs: config.shutdownTimeoutMs }, 'shutting down: finishing requests in flight');
      // The last resort, should a closing step hang past every bound of its own.
      setTimeout(() => {
        log.fatal('shutdown did not finish in time: exiting');
        process.exit(1);
      }, config.shutdownTimeoutMs + CLOSE_GRACE_MS).unref();
      const clean = await closeGracefully(app, deps, {
        timeoutMs: config.shutdownTimeoutMs,
        responses,
        alsoClose: management?.close,
      });
      log.info({ clean }, 'shut down');
      await new Promise<void>((resolve) => log.flush(() => resolve()));
      process.exit(clean ? exitCode : 1);
    })().catch((error) => {
      log.fatal({ err: error }, 'shutdown failed');
      process.exit(1);
    });
  };
  installProcessPolicy(deps, () => shutdown('uncaught exception', 1));
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));
  process.on('SIGINT', () => shutdown('SIGINT', 0));
}

/** Past SHUTDOWN_TIMEOUT, how long the closing steps (flushes, database) may take before exit(1). */
const CLOSE_GRACE_MS = 15_000;

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
