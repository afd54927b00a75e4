// The server's OpenAPI document, as a running instance serves it at /openapi.json: built from the
// server's own routes (in-memory SQLite, a throwaway master key), with a fixed public URL so the
// generated types do not change with the machine.
import { randomBytes } from 'node:crypto';
import openapiTS, { astToString } from 'openapi-typescript';
import { buildApp } from '../../server/src/app.js';
import { loadConfig } from '../../server/src/config.js';
import { migrateToLatest } from '../../server/src/db/index.js';
import { closeDeps, createDeps } from '../../server/src/deps.js';
import { createLogger } from '../../server/src/logger.js';

export async function serverOpenApi(): Promise<Record<string, unknown>> {
  const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'http://localhost:8080' });
  const deps = await createDeps({
    config,
    log: createLogger('silent'),
    masterKey: randomBytes(32),
    dbOptions: { dialect: 'sqlite', filename: ':memory:' },
  });
  try {
    await migrateToLatest(deps.db);
    const app = await buildApp(deps);
    await app.ready();
    const document = app.swagger() as unknown as Record<string, unknown>;
    await app.close();
    return document;
  } finally {
    await closeDeps(deps);
  }
}

/** The TypeScript types of the document, as committed in src/generated/openapi.ts. */
export async function generatedTypes(): Promise<string> {
  const ast = await openapiTS((await serverOpenApi()) as never);
  return `// Generated from the server's OpenAPI document by \`npm run generate --workspace sdk\`; do not edit.\n// A test (sdk/test/openapi.test.ts) fails when this falls behind the server.\n\n${astToString(ast)}`;
}
