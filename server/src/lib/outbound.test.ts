import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressAllowed, parseNetworks } from './outbound.js';

// The outbound guard judges the address actually connected to (after DNS): every IPv6 form that
// carries an IPv4 address inside it must be judged as that IPv4 or refused outright.

describe('addressAllowed', () => {
  const privateV4 = ['10.0.0.1', '127.0.0.1', '169.254.169.254', '192.168.1.1', '172.16.0.1', '100.64.0.1'];

  it('refuses every IPv6 form embedding a private IPv4 address', () => {
    for (const v4 of privateV4) {
      const [a, b, c, d] = v4.split('.').map(Number);
      const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
      const forms = [
        `::${v4}`, // IPv4-compatible (RFC 4291 §2.5.5.1), dotted as written
        `::${hex}`, // …and as URLs and DNS give it
        `::ffff:${v4}`, // IPv4-mapped
        `::ffff:${hex}`,
        `::ffff:0:${v4}`, // SIIT (RFC 6145)
        `64:ff9b::${v4}`, // NAT64 well-known prefix (RFC 6052)
        `64:ff9b:1::${hex}`, // NAT64 local-use prefix (RFC 8215)
        `2002:${hex}::1`, // 6to4 (RFC 3056)
        `2001:0:4136:e378:8000:63bf:${(0xffff ^ ((a << 8) | b)).toString(16)}:${(0xffff ^ ((c << 8) | d)).toString(16)}`, // Teredo client (RFC 4380)
      ];
      for (const form of forms) assert.equal(addressAllowed(form, []), false, form);
    }
  });

  it('still allows public addresses, and IPv4-mapped public IPv4', () => {
    for (const address of ['8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8', '::ffff:808:808']) {
      assert.equal(addressAllowed(address, []), true, address);
    }
  });

  it('an operator-allowed IPv4 network does not open the IPv4-compatible form of its addresses', () => {
    const allowed = parseNetworks('127.0.0.0/8');
    assert.equal(addressAllowed('127.0.0.1', allowed), true);
    assert.equal(addressAllowed('::ffff:127.0.0.1', allowed), true, 'mapped is the same address');
    assert.equal(addressAllowed('::7f00:1', allowed), false);
    assert.equal(addressAllowed('::127.0.0.1', allowed), false);
  });
});
