import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generatedTypes } from '../scripts/openapi.js';

describe('generated types', () => {
  it('match the server: run `npm run generate --workspace sdk` after changing a route', async () => {
    const committed = readFileSync(new URL('../src/generated/openapi.ts', import.meta.url), 'utf8');
    assert.ok(
      committed === (await generatedTypes()),
      'sdk/src/generated/openapi.ts is behind the server’s OpenAPI document',
    );
  });
});
