import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createIds } from './ids.js';

describe('createIds', () => {
  it('makes prefixed, unique ids in creation order, also within one millisecond', () => {
    const ids = createIds(() => 1_800_000_000_000);
    let previous = '';
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = ids.next('usr');
      assert.match(id, /^usr_[0-9a-hjkmnp-tv-z]{26}$/);
      assert.ok(id > previous, `${id} after ${previous}`);
      assert.ok(!seen.has(id));
      seen.add(id);
      previous = id;
    }
  });

  it('orders by time first', () => {
    let now = 1_800_000_000_000;
    const ids = createIds(() => now);
    const first = ids.next('key');
    now += 1;
    assert.ok(ids.next('key') > first);
  });
});
