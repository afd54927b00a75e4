import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSecret, hasValidChecksum, visibleStart } from './tokens.js';

describe('createSecret', () => {
  it('always has the fixed length, the prefix and a valid checksum', () => {
    for (let i = 0; i < 5_000; i++) {
      const secret = createSecret('gk');
      assert.match(secret, /^gk_[0-9A-Za-z]{38}$/);
      assert.ok(hasValidChecksum(secret, 'gk'), secret);
    }
  });

  it('rejects a one-character typo, a wrong prefix and a truncated secret', () => {
    const secret = createSecret('gk');
    const swapped = secret.slice(0, 10) + (secret[10] === 'a' ? 'b' : 'a') + secret.slice(11);
    assert.equal(hasValidChecksum(swapped, 'gk'), false);
    assert.equal(hasValidChecksum(secret, 'gsk'), false);
    assert.equal(hasValidChecksum(secret.slice(0, -1), 'gk'), false);
  });

  it('shows only the prefix and six characters', () => {
    const secret = createSecret('gsk');
    assert.equal(visibleStart(secret), secret.slice(0, 10));
  });
});
