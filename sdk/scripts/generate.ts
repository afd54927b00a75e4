// Writes src/generated/openapi.ts from the server's routes (npm run generate --workspace sdk).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedTypes } from './openapi.js';

const target = join(dirname(fileURLToPath(import.meta.url)), '../src/generated/openapi.ts');
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, await generatedTypes());
process.stdout.write(`wrote ${target}\n`);
