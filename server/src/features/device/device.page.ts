import { escapeHtml } from '../../http/pages.js';
import type { DeviceClient } from './device.service.js';

/** The first step: the code shown on the device, and the account to approve it with. */
export function codeForm(csrf: string, userCode: string, signedInAs: string | null): string {
  const account = signedInAs
    ? `<p class="note">Signed in as ${escapeHtml(signedInAs)}. Leave email and password empty to continue as them.</p>`
    : '';
  return (
    `<p>Enter the code shown on your device, and sign in to approve it.</p>` +
    `<form method="post" action="/device">` +
    `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">` +
    `<label for="user_code">Code</label><input id="user_code" name="user_code" value="${escapeHtml(userCode)}" autocomplete="off" autocapitalize="characters" required>` +
    account +
    `<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username">` +
    `<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">` +
    `<button type="submit">Continue</button></form>`
  );
}

/**
 * Which application asks. Only a name Gatehouse knows is shown as a name; anything else the device
 * sent is a claim, marked unverified and shown as a code, so a request cannot present itself as
 * "Sign in to Your Bank" (RFC 8628 §5.4, remote phishing).
 */
function clientLines(client: DeviceClient, tenant: string, email: string): string {
  const who = client.name === null ? 'An unverified application' : escapeHtml(client.name);
  const asks = `<p><strong>${who}</strong> asks to sign in to <strong>${escapeHtml(tenant)}</strong> as <strong>${escapeHtml(email)}</strong>.</p>`;
  if (client.name !== null) return `${asks}<p class="note">Approve only if you started this sign-in yourself.</p>`;
  const claim = client.id ? `; it calls itself <code>${escapeHtml(client.id)}</code>, which anyone can claim` : '';
  return `${asks}<p class="note">Gatehouse does not know this application${claim}. Approve only if you started this sign-in yourself, on your own device.</p>`;
}

/** The second step: which application asks, for which account; approve or deny. */
export function confirmForm(
  csrf: string,
  userCode: string,
  client: DeviceClient,
  email: string,
  tenant: string,
): string {
  return (
    clientLines(client, tenant, email) +
    `<p>Check that your device shows this code:</p><p class="code">${escapeHtml(userCode)}</p>` +
    `<form method="post" action="/device/decision">` +
    `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">` +
    `<input type="hidden" name="user_code" value="${escapeHtml(userCode)}">` +
    `<button type="submit" name="decision" value="approve">Approve</button>` +
    `<button type="submit" name="decision" value="deny">Deny</button></form>`
  );
}
