import type { Migration } from 'kysely';
import * as m0001 from './0001_init.js';

/** Every migration, in order. Listed explicitly so bundlers and tsx need no directory scan. */
export const migrations: Record<string, Migration> = {
  '0001_init': m0001,
};
