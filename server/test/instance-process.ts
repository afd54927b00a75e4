// One Gatehouse instance in a process of its own, on a harness's database (PostgreSQL), for tests
// that kill an instance for real: SIGKILL leaves no final flush, no shutdown hook, nothing. Started
// by Harness.spawnInstance with its settings in GATEHOUSE_TEST_INSTANCE; prints {"url"} once listening.
import type { AddressInfo } from 'node:net';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { DbOptions } from '../src/db/index.js';
import { createDeps } from '../src/deps.js';
import { createLogger } from '../src/logger.js';

interface InstanceSpec {
  env: Record<string, string | undefined>;
  dbOptions: DbOptions;
  masterKey: string;
  limiterNamespace: string;
}

const spec = JSON.parse(process.env.GATEHOUSE_TEST_INSTANCE ?? '{}') as InstanceSpec;
const deps = await createDeps({
  config: loadConfig(spec.env),
  log: createLogger(process.env.TEST_LOG_LEVEL ?? 'warn', process.stderr),
  masterKey: Buffer.from(spec.masterKey, 'hex'),
  dbOptions: spec.dbOptions,
  limiterNamespace: spec.limiterNamespace,
});
await deps.keyring.load();
const app = await buildApp(deps);
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as AddressInfo;
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
