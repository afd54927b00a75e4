import type { EffectiveSettings } from '../tenants/tenants.types.js';

let common: Promise<Set<string>> | undefined;

/** zxcvbn-ts's list of ~49k most common passwords, loaded on first use. */
function commonPasswords(): Promise<Set<string>> {
  common ??= import('@zxcvbn-ts/language-common').then(
    ({ dictionary }) => new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase())),
  );
  return common;
}

/**
 * OWASP ASVS 5.0 V6.2: length limits counted in Unicode code points, no composition rules,
 * and a check against common passwords. Returns the problems, empty when the password is fine.
 */
export async function checkPassword(password: string, policy: EffectiveSettings['passwordPolicy']): Promise<string[]> {
  const length = [...password].length;
  const problems: string[] = [];
  if (length < policy.minLength) problems.push(`must be at least ${policy.minLength} characters`);
  if (length > policy.maxLength) problems.push(`must be at most ${policy.maxLength} characters`);
  if (policy.blockCommon && (await commonPasswords()).has(password.toLowerCase())) {
    problems.push('is one of the most common passwords; choose another');
  }
  return problems;
}
