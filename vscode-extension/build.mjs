// Bundles the extension (and the SDK it uses, from source) into dist/extension.js for VS Code.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/extension.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outfile: 'dist/extension.cjs',
  external: ['vscode'],
  conditions: ['gatehouse-source'],
  sourcemap: true,
  logLevel: 'warning',
});
