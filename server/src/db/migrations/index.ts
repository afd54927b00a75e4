import type { Migration } from 'kysely';
import * as m0001 from './0001_init.js';
import * as m0002 from './0002_plans.js';
import * as m0003 from './0003_usage.js';
import * as m0004 from './0004_llm_providers.js';
import * as m0005 from './0005_llm_routing.js';
import * as m0006 from './0006_vault.js';
import * as m0007 from './0007_oauth.js';
import * as m0008 from './0008_sign_in.js';
import * as m0009 from './0009_webhooks.js';
import * as m0010 from './0010_realtime.js';
import * as m0011 from './0011_device.js';
import * as m0012 from './0012_one_active_signing_key.js';
import * as m0013 from './0013_identity_authority.js';
import * as m0014 from './0014_plan_prompt_limit.js';
import * as m0015 from './0015_vault_link_binding.js';

/** Every migration, in order. Listed explicitly so bundlers and tsx need no directory scan. */
export const migrations: Record<string, Migration> = {
  '0001_init': m0001,
  '0002_plans': m0002,
  '0003_usage': m0003,
  '0004_llm_providers': m0004,
  '0005_llm_routing': m0005,
  '0006_vault': m0006,
  '0007_oauth': m0007,
  '0008_sign_in': m0008,
  '0009_webhooks': m0009,
  '0010_realtime': m0010,
  '0011_device': m0011,
  '0012_one_active_signing_key': m0012,
  '0013_identity_authority': m0013,
  '0014_plan_prompt_limit': m0014,
  '0015_vault_link_binding': m0015,
};
