import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type Config, decodeMasterKey } from './config.js';

/**
 * The master key from GATEHOUSE_MASTER_KEY; in development only, one generated into the data
 * directory (with a loud warning) so `npm start` works on a fresh clone. Production refuses to
 * start without the variable (config.ts).
 */
export function resolveMasterKey(config: Config, log: Logger): Buffer {
  if (config.masterKey) {
    const key = decodeMasterKey(config.masterKey);
    if (key) return key;
  }
  if (config.nodeEnv === 'production') throw new Error('GATEHOUSE_MASTER_KEY is required when NODE_ENV=production');
  const file = join(config.dataDir, 'master.key');
  if (!existsSync(file)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o600 });
  }
  const key = decodeMasterKey(readFileSync(file, 'utf8').trim());
  if (!key) throw new Error(`${file} does not hold a 32-byte base64 key`);
  log.warn(
    { file },
    'DEVELOPMENT MASTER KEY IN USE: signing keys are encrypted with a key stored next to the data. ' +
      'Set GATEHOUSE_MASTER_KEY (openssl rand -base64 32) before any real use; losing it loses every encrypted secret.',
  );
  return key;
}
