import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has working defaults for development with an empty environment', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.nodeEnv, 'development');
    assert.equal(config.publicUrl, 'http://localhost:8080');
    assert.equal(config.dataDir, './data');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.tokens.accessTtlMs, 900_000);
    assert.equal(config.tokens.refreshIdleTtlMs, 7 * 86_400_000);
    assert.equal(config.tokens.refreshAbsoluteTtlMs, 30 * 86_400_000);
    assert.equal(config.tokens.refreshGraceMs, 10_000);
  });

  it('lists every problem in one error', () => {
    try {
      loadConfig({
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
        DATABASE_URL: 'mysql://x',
        ACCESS_TOKEN_TTL: 'soon',
        GATEHOUSE_MASTER_KEY: 'short',
      });
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      const text = error.problems.join('\n');
      for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'ACCESS_TOKEN_TTL', 'GATEHOUSE_MASTER_KEY']) {
        assert.match(text, new RegExp(name), `${name} missing from: ${text}`);
      }
      assert.equal(error.problems.length, 5);
    }
  });

  it('refuses production without a master key and a public URL', () => {
    assert.throws(
      () => loadConfig({ NODE_ENV: 'production' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some((p) => p.includes('GATEHOUSE_MASTER_KEY')) &&
        error.problems.some((p) => p.includes('PUBLIC_URL')),
    );
    const ok = loadConfig({
      NODE_ENV: 'production',
      PUBLIC_URL: 'https://auth.example.com/',
      GATEHOUSE_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
    });
    assert.equal(ok.publicUrl, 'https://auth.example.com');
  });

  it('parses durations with units and checks their order', () => {
    const config = loadConfig({
      ACCESS_TOKEN_TTL: '5m',
      REFRESH_TOKEN_IDLE_TTL: '2d',
      REFRESH_TOKEN_ABSOLUTE_TTL: '3d',
    });
    assert.equal(config.tokens.accessTtlMs, 300_000);
    assert.throws(() => loadConfig({ REFRESH_TOKEN_IDLE_TTL: '40d' }), /REFRESH_TOKEN_IDLE_TTL must not exceed/);
  });

  it('bounds database waits and keeps /metrics off by default; refuses a short METRICS_TOKEN and METRICS_PORT = PORT', () => {
    const config = loadConfig({});
    assert.deepEqual(config.database, { connectTimeoutMs: 5_000, statementTimeoutMs: 30_000 });
    assert.deepEqual(config.metrics, { token: undefined, port: undefined });
    assert.equal(config.shutdownTimeoutMs, 10_000);
    assert.throws(
      () => loadConfig({ METRICS_TOKEN: 'short', PORT: '9000', METRICS_PORT: '9000', DATABASE_STATEMENT_TIMEOUT: 'x' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some((p) => p.startsWith('METRICS_TOKEN')) &&
        error.problems.some((p) => p.startsWith('METRICS_PORT')) &&
        error.problems.some((p) => p.startsWith('DATABASE_STATEMENT_TIMEOUT')),
    );
  });

  it('TRUST_PROXY takes proxy addresses; true and hop counts are refused with what to set instead', () => {
    assert.equal(loadConfig({}).trustProxy, false);
    assert.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1,loopback' }).trustProxy, [
      '10.0.0.0/8',
      '127.0.0.1',
      '::1',
      'loopback',
    ]);
    for (const value of ['true', '1']) {
      assert.throws(
        () => loadConfig({ TRUST_PROXY: value }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.problems.length === 1 &&
          /^TRUST_PROXY.*set the addresses or networks of your proxies instead, e\.g\. TRUST_PROXY=10\.0\.0\.0\/8,127\.0\.0\.1$/.test(
            error.problems[0] ?? '',
          ),
        value,
      );
    }
    assert.throws(() => loadConfig({ TRUST_PROXY: '10.0.0.0/8,proxy.internal' }), /TRUST_PROXY: "proxy.internal"/);
  });
});
