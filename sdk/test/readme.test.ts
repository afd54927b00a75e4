import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createHarness, type Harness, listen } from '../../server/test/harness.js';

const sdkDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const blocks = [...readFileSync(join(sdkDir, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

let h: Harness;
let env: NodeJS.ProcessEnv;
before(async () => {
  h = await createHarness();
  const url = await listen(h.app);
  const t = await h.tenant();
  const user = await t.user();
  env = {
    ...process.env,
    GATEHOUSE_URL: url,
    GATEHOUSE_ISSUER: 'http://gatehouse.test',
    GATEHOUSE_TENANT: t.publishableKey,
    GATEHOUSE_EMAIL: user.email,
    GATEHOUSE_PASSWORD: user.password,
    GATEHOUSE_API_KEY: user.apiKey,
    GATEHOUSE_SERVICE_KEY: await t.serviceKey(),
    HOME: sdkDir,
  };
});
after(() => h.close());

describe('sdk/README.md', () => {
  it('has examples', () => assert.ok(blocks.length >= 5));
  for (const [index, code] of blocks.entries()) {
    const title =
      code
        .split('\n')
        .find((line) => line.startsWith('import'))
        ?.slice(0, 60) ?? `block ${index + 1}`;
    it(`example ${index + 1} runs (${title})`, async () => {
      // In the package's folder, so tsconfig's paths map @gatehouse/sdk to the sources.
      const file = join(sdkDir, `test/.readme-${index + 1}.ts`);
      writeFileSync(file, `${code}\nexport {};\n`);
      try {
        // Not spawnSync: the Gatehouse it calls runs in this process and must keep answering.
        const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
          execFile(
            process.execPath,
            ['--import', 'tsx', file],
            { cwd: sdkDir, env, timeout: 60_000 },
            (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
          ),
        );
        assert.equal(run.code, 0, `example ${index + 1} failed:\n${run.stdout}\n${run.stderr}`);
        assert.ok(run.stdout.length > 0, 'it printed what it did');
      } finally {
        rmSync(file, { force: true });
      }
    });
  }
});
