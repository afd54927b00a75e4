// Runs the fuzz suites (server/test/fuzz/*.fuzz.ts: HTTP, realtime, …) with node:test through tsx,
// like scripts/test.mjs runs the tests. Arguments keep only files whose path contains one of them.
// FUZZ_SEED replays a run (each suite prints its seed), FUZZ_CASES sets the cases per route.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = 'server/test/fuzz';
const files = readdirSync(root, { recursive: true })
  .map(String)
  .filter((file) => file.endsWith('.fuzz.ts'))
  .map((file) => join(root, file))
  .sort();
const only = process.argv.slice(2);
const selected = only.length > 0 ? files.filter((f) => only.some((o) => f.includes(o))) : files;
if (selected.length === 0) {
  process.stderr.write('no fuzz files found\n');
  process.exit(1);
}
// gatehouse-source: workspaces import @gatehouse/sdk from its sources, so no build is needed first.
// One file at a time: each suite is CPU-bound and sized to a few minutes on its own.
const args = [
  '--conditions=gatehouse-source',
  '--import',
  'tsx',
  '--test',
  '--test-concurrency=1',
  '--test-reporter=spec',
  ...selected,
];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
