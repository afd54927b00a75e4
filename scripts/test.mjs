// Runs every *.test.ts under server/ and sdk/ with node:test through tsx.
// Node 20's --test does not expand globs, so the files are listed here.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['server/src', 'server/test', 'sdk/test', 'vscode-extension/test'];
const files = roots.flatMap((root) =>
  readdirSync(root, { recursive: true })
    .map(String)
    .filter((file) => file.endsWith('.test.ts'))
    .map((file) => join(root, file)),
);
const only = process.argv.slice(2);
const selected = only.length > 0 ? files.filter((f) => only.some((o) => f.includes(o))) : files;
if (selected.length === 0) {
  process.stderr.write('no test files found\n');
  process.exit(1);
}
// gatehouse-source: workspaces import @gatehouse/sdk from its sources, so tests need no build first.
const args = ['--conditions=gatehouse-source', '--import', 'tsx', '--test', '--test-reporter=spec', ...selected];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
