import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { injectBrowser, submit } from './browser.js';
import type { Harness, TestUser } from './harness.js';

/**
 * The hosted device page (/device) in a real browser: a fresh Chromium context (its own cookies)
 * on `url`, usually `verification_uri_complete` at the harness's PUBLIC_URL (see launchChromium's
 * `hosts`). Close it with `page.context().close()`.
 */
export async function openDevicePage(browser: Browser, url: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const response = await page.goto(url);
  assert.equal(response?.status(), 200, `GET ${url}`);
  return page;
}

/** Signs in on the page's first step; returns the status of the page it leads to. */
export async function signInOnPage(page: Page, user: { email: string; password: string }, userCode?: string) {
  if (userCode !== undefined) await page.fill('#user_code', userCode);
  await page.fill('#email', user.email);
  await page.fill('#password', user.password);
  return submit(page, 'button[type=submit]');
}

/** Clicks Approve or Deny on the confirmation step; returns the status of the page it leads to. */
export function decideOnPage(page: Page, decision: 'approve' | 'deny') {
  return submit(page, `button[value=${decision}]`);
}

/**
 * Approves a device sign-in as its person would: opens `verification_uri_complete`, signs in,
 * approves; returns the application the page said was asking. In Chromium when there is one; without it (chromium not installed) through the inject
 * driver below, so that tests of what happens around the page (the VS Code extension's sign-in)
 * still run, while the page itself is tested only in Chromium (device.test.ts skips without it).
 */
export async function approveDevice(
  driver: { browser: Browser | null; h: Pick<Harness, 'request'> },
  verificationUriComplete: string,
  user: TestUser,
): Promise<{ application: string }> {
  if (driver.browser) {
    const page = await openDevicePage(driver.browser, verificationUriComplete);
    try {
      assert.equal(await signInOnPage(page, user), 200, await page.content());
      const application = (await page.textContent('p strong')) ?? '';
      assert.equal(await decideOnPage(page, 'approve'), 200, await page.content());
      assert.match(await page.content(), /Approved/);
      return { application };
    } finally {
      await page.context().close();
    }
  }
  const browser = injectBrowser(driver.h);
  const page = new URL(verificationUriComplete);
  const userCode = page.searchParams.get('user_code') ?? '';
  await browser.get(`${page.pathname}${page.search}`);
  const confirm = await browser.post('/device', { user_code: userCode, email: user.email, password: user.password });
  const application = /<p><strong>([^<]*)<\/strong> asks/.exec(confirm.text)?.[1] ?? '';
  const decided = await browser.post('/device/decision', { user_code: userCode, decision: 'approve' });
  assert.match(decided.text, /Approved/);
  return { application };
}
