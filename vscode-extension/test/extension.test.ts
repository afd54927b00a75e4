import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import type * as VscodeApi from 'vscode';
import { launchChromium, NO_CHROMIUM } from '../../server/test/browser.js';
import { approveDevice } from '../../server/test/device-page.js';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../server/test/fake-llm.js';
import { createHarness, type Harness, listen, type TestTenant, type TestUser } from '../../server/test/harness.js';
import { type AuthManager, activateWith } from '../src/main.js';

let h: Harness;
let llm: FakeLlm;
let baseUrl: string;
/** The person's browser, where the extension's sign-in link opens (null without Chromium: see approveDevice). */
let browser: Browser | null;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  llm = await startFakeLlm();
  baseUrl = await listen(h.app);
  browser = await launchChromium({ 'gatehouse.test': baseUrl });
});
after(async () => {
  await browser?.close();
  await h.close();
  await llm.close();
});

/** A small stand-in for the `vscode` module: records what the extension shows and answers as told. */
function standIn(t: TestTenant, person: TestUser, secrets: Map<string, string>) {
  const shown: string[] = [];
  /** The application the device page named, per approval. */
  const approvedFor: string[] = [];
  const commands = new Map<string, () => unknown>();
  const output: string[] = [];
  const status = { text: '', command: '', show() {}, dispose() {} };
  const answers = { warning: undefined as string | undefined, input: 'Say hello' };
  const settings: Record<string, string> = { serverUrl: baseUrl, tenantKey: t.publishableKey, model: 'gpt-test' };
  const vscode = {
    StatusBarAlignment: { Left: 1, Right: 2 },
    Uri: { parse: (value: string) => ({ toString: () => value }) },
    env: {
      openExternal: async (uri: { toString(): string }) => {
        const { application } = await approveDevice({ browser, h }, uri.toString(), person);
        approvedFor.push(application);
        return true;
      },
    },
    window: {
      createStatusBarItem: () => status,
      createOutputChannel: () => ({
        append: (text: string) => output.push(text),
        appendLine: (text: string) => output.push(`${text}\n`),
        show() {},
        dispose() {},
      }),
      showInformationMessage: async (message: string) => void shown.push(message),
      showErrorMessage: async (message: string) => void shown.push(`error: ${message}`),
      showWarningMessage: async (message: string) => {
        shown.push(`warning: ${message}`);
        return answers.warning;
      },
      showInputBox: async () => answers.input,
      activeTextEditor: undefined,
    },
    commands: {
      registerCommand: (name: string, run: () => unknown) => {
        commands.set(name, run);
        return { dispose: () => commands.delete(name) };
      },
      executeCommand: async (name: string) => commands.get(name)?.(),
    },
    workspace: {
      getConfiguration: () => ({ get: (key: string) => settings[key] }),
      onDidChangeConfiguration: () => ({ dispose() {} }),
    },
  };
  const context = {
    subscriptions: [] as { dispose(): unknown }[],
    secrets: {
      get: async (key: string) => secrets.get(key),
      store: async (key: string, value: string) => void secrets.set(key, value),
      delete: async (key: string) => void secrets.delete(key),
      onDidChange: () => ({ dispose() {} }),
    },
  };
  return {
    vscode: vscode as unknown as typeof VscodeApi,
    context: context as unknown as VscodeApi.ExtensionContext,
    shown,
    approvedFor,
    output,
    status,
    run: (name: string) => commands.get(name)?.() as Promise<unknown>,
    dispose: () => {
      for (const item of context.subscriptions) item.dispose();
    },
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000) {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('VS Code extension against a real Gatehouse', () => {
  it('signs in through the browser, shows live usage, asks, restores at start, and reacts to revocation', async (ctx) => {
    if (!browser) ctx.diagnostic(`the device page is approved through inject: ${NO_CHROMIUM}`);
    const t = await tenantServedBy(h, llm);
    const person = await t.user();
    const secrets = new Map<string, string>();

    const first = standIn(t, person, secrets);
    const manager: AuthManager = await activateWith(first.vscode, first.context);
    assert.match(first.status.text, /sign in/);
    await first.run('gatehouse.signIn'); // device flow: the stand-in browser approves; ~5 s of polling
    assert.ok(
      first.shown.some((m) => m.includes(`signed in as ${person.email}`)),
      first.shown.join('\n'),
    );
    assert.deepEqual(
      first.approvedFor,
      ['Gatehouse for VS Code'],
      'the page names the extension, as Gatehouse knows it',
    );
    assert.match(first.status.text, /free · [\d,]+ tokens/);
    assert.ok(secrets.get('gatehouse.tokens')?.includes('accessToken'), 'the tokens live in SecretStorage');

    await first.run('gatehouse.showUsage');
    assert.ok(first.shown.some((m) => m.includes(person.email) && m.includes('free')));

    const before = first.status.text;
    await first.run('gatehouse.ask');
    assert.ok(first.output.join('').includes('Hello from the fake provider'), first.output.join(''));
    await until(() => first.status.text !== before, 'the live usage update in the status bar');
    first.dispose();

    // A new window: the stored session is restored without asking.
    const second = standIn(t, person, secrets);
    const restored = await activateWith(second.vscode, second.context);
    assert.equal(restored.signedIn, true);
    assert.match(second.status.text, /free ·/);

    // The session is revoked elsewhere: the extension says so and offers to sign in again.
    const tokens = JSON.parse(secrets.get('gatehouse.tokens') ?? '{}') as { accessToken: string };
    const sessions = await h.request({ method: 'GET', url: '/api/auth/sessions', token: tokens.accessToken });
    for (const session of sessions.body.data ?? sessions.body) {
      await h.request({ method: 'DELETE', url: `/api/auth/sessions/${session.id}`, token: person.apiKey });
    }
    await until(() => second.shown.some((m) => m.startsWith('warning:')), 'the warning after revocation');
    assert.match(second.status.text, /sign in/);
    assert.equal(secrets.has('gatehouse.tokens'), false, 'the dead session is forgotten');
    second.dispose();
    manager.dispose();
  });

  it('builds into a .vsix with vsce', async () => {
    const dir = join(dirname(fileURLToPath(import.meta.url)), '..');
    const run = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile('npm', ['run', 'package'], { cwd: dir, timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? 1 : 0, out: `${stdout}${stderr}` }),
      ),
    );
    assert.equal(run.code, 0, run.out);
    assert.ok(existsSync(join(dir, 'dist/gatehouse.vsix')));
  });
});
