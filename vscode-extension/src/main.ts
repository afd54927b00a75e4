import {
  createClient,
  type GatehouseClient,
  GatehouseError,
  type RealtimeConnection,
  type StoredTokens,
  type TokenStorage,
  type WebSocketConstructor,
} from '@gatehouse/sdk';
import type * as VscodeApi from 'vscode';
import WebSocket from 'ws';

type Vscode = typeof VscodeApi;
const SECRET = 'gatehouse.tokens';

/** The SDK's token storage on VS Code's SecretStorage (the OS keychain): secrets live nowhere else. */
export function secretStorage(secrets: VscodeApi.SecretStorage): TokenStorage {
  return {
    async get() {
      const text = await secrets.get(SECRET);
      return text ? (JSON.parse(text) as StoredTokens) : null;
    },
    async set(tokens) {
      await secrets.store(SECRET, JSON.stringify(tokens));
    },
    async clear() {
      await secrets.delete(SECRET);
    },
  };
}

interface Usage {
  plan: string;
  tokens_remaining: number | null;
  tokens_used: number;
}

/**
 * Seed 000's AuthManager: restores the session at start, keeps it fresh in the background
 * (the SDK refreshes single-flight when the token is due), follows the realtime feed for live
 * usage and for revocation, and asks to sign in again when the session cannot be renewed.
 */
export class AuthManager {
  client: GatehouseClient;
  private feed: RealtimeConnection | null = null;
  private timer: NodeJS.Timeout | undefined;
  usage: Usage | null = null;
  email: string | null = null;

  constructor(
    private readonly vscode: Vscode,
    private readonly storage: TokenStorage,
    private readonly onChange: () => void,
  ) {
    this.client = this.makeClient();
  }

  private makeClient(): GatehouseClient {
    const settings = this.vscode.workspace.getConfiguration('gatehouse');
    return createClient({
      baseUrl: settings.get<string>('serverUrl') ?? 'http://localhost:8080',
      tenant: settings.get<string>('tenantKey') || undefined,
      storage: this.storage,
    });
  }

  /** Settings changed: a new client for the new server or tenant (the stored session stays). */
  reconfigure(): void {
    this.stopFeed();
    this.client = this.makeClient();
    void this.restore();
  }

  /** At start: a stored session is used if it still works (refreshed if needed), else forgotten. */
  async restore(): Promise<boolean> {
    if (!(await this.storage.get())) return false;
    try {
      const me = await this.client.auth.me();
      this.email = me.email;
      await this.loadUsage();
      this.startFeed();
      this.keepFresh();
      this.onChange();
      return true;
    } catch (error) {
      if (error instanceof GatehouseError && error.status === 401) await this.lost('Your Gatehouse session ended.');
      return false;
    }
  }

  /** Device sign-in: shows the code, opens the browser, and waits for the approval. */
  async signIn(): Promise<void> {
    const flow = await this.client.auth.startDeviceSignIn({ clientId: 'gatehouse-vscode' });
    void this.vscode.env.openExternal(this.vscode.Uri.parse(flow.verificationUriComplete));
    void this.vscode.window.showInformationMessage(
      `Gatehouse: approve the sign-in in your browser. Your code is ${flow.userCode}.`,
    );
    const { user } = await flow.complete();
    this.email = user.email;
    await this.loadUsage();
    this.startFeed();
    this.keepFresh();
    this.onChange();
    void this.vscode.window.showInformationMessage(`Gatehouse: signed in as ${user.email}.`);
  }

  async signOut(): Promise<void> {
    this.stopFeed();
    await this.client.auth.logout().catch(() => undefined);
    this.clear();
  }

  async loadUsage(): Promise<Usage> {
    this.usage = (await this.client.usage.get()) as unknown as Usage;
    this.onChange();
    return this.usage;
  }

  get signedIn(): boolean {
    return this.email !== null;
  }

  /** Renews the access token a little before it expires, so a long-idle editor is still signed in. */
  private keepFresh(): void {
    clearInterval(this.timer);
    this.timer = setInterval(async () => {
      const tokens = await this.storage.get();
      if (!tokens || tokens.expiresAt - Date.now() > 120_000) return;
      await this.client.auth.refresh().catch(async (error) => {
        if (error instanceof GatehouseError && error.status === 401) await this.lost('Your Gatehouse session expired.');
      });
    }, 60_000);
    this.timer.unref?.();
  }

  private startFeed(): void {
    this.stopFeed();
    const feed = this.client.realtime.connect({ WebSocket: WebSocket as unknown as WebSocketConstructor });
    feed.on('usage', (usage) => {
      this.usage = { ...(this.usage as Usage), ...(usage as unknown as Usage) };
      this.onChange();
    });
    feed.on('close', ({ reason }) => {
      if (reason !== 'client_closed') void this.lost(`Your Gatehouse session was ended (${reason}).`);
    });
    this.feed = feed;
  }

  private stopFeed(): void {
    const feed = this.feed;
    this.feed = null;
    feed?.close();
  }

  private clear(): void {
    clearInterval(this.timer);
    this.email = null;
    this.usage = null;
    this.onChange();
  }

  /** The session is gone (revoked, or refresh failed): forget it and offer to sign in again. */
  private async lost(message: string): Promise<void> {
    this.stopFeed();
    await this.storage.clear();
    this.clear();
    const choice = await this.vscode.window.showWarningMessage(message, 'Sign In');
    if (choice === 'Sign In') await this.vscode.commands.executeCommand('gatehouse.signIn');
  }

  dispose(): void {
    this.stopFeed();
    clearInterval(this.timer);
  }
}

/** The status bar text: plan and tokens left, or a prompt to sign in. */
export function statusText(manager: AuthManager): string {
  if (!manager.signedIn) return '$(account) Gatehouse: sign in';
  const usage = manager.usage;
  if (!usage) return '$(account) Gatehouse';
  const left = usage.tokens_remaining === null ? 'unlimited' : usage.tokens_remaining.toLocaleString('en-US');
  return `$(pulse) ${usage.plan} · ${left} tokens`;
}

/** Registers the commands, the status bar item and the AuthManager; what VS Code's activate() does. */
export async function activateWith(vscode: Vscode, context: VscodeApi.ExtensionContext): Promise<AuthManager> {
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  const output = vscode.window.createOutputChannel('Gatehouse');
  const manager = new AuthManager(vscode, secretStorage(context.secrets), () => {
    status.text = statusText(manager);
    status.command = manager.signedIn ? 'gatehouse.showUsage' : 'gatehouse.signIn';
  });
  status.text = statusText(manager);
  status.command = 'gatehouse.signIn';
  status.show();

  const fail = (error: unknown) =>
    void vscode.window.showErrorMessage(`Gatehouse: ${error instanceof Error ? error.message : String(error)}`);
  const command = (name: string, run: () => Promise<unknown>) =>
    vscode.commands.registerCommand(name, () => run().catch(fail));

  context.subscriptions.push(
    status,
    output,
    { dispose: () => manager.dispose() },
    command('gatehouse.signIn', () => manager.signIn()),
    command('gatehouse.signOut', async () => {
      await manager.signOut();
      void vscode.window.showInformationMessage('Gatehouse: signed out.');
    }),
    command('gatehouse.showUsage', async () => {
      if (!manager.signedIn) return vscode.commands.executeCommand('gatehouse.signIn');
      const usage = await manager.loadUsage();
      const left =
        usage.tokens_remaining === null ? 'no limit' : `${usage.tokens_remaining.toLocaleString('en-US')} tokens left`;
      return vscode.window.showInformationMessage(
        `Gatehouse: ${manager.email} on ${usage.plan}, ${usage.tokens_used.toLocaleString('en-US')} tokens used, ${left}.`,
      );
    }),
    command('gatehouse.ask', async () => {
      if (!manager.signedIn) return vscode.commands.executeCommand('gatehouse.signIn');
      const editor = vscode.window.activeTextEditor;
      const selection = editor && !editor.selection.isEmpty ? editor.document.getText(editor.selection) : '';
      const prompt = selection || (await vscode.window.showInputBox({ prompt: 'Ask the LLM gateway' }));
      if (!prompt) return;
      const model = vscode.workspace.getConfiguration('gatehouse').get<string>('model') ?? 'gpt-4o-mini';
      output.show(true);
      output.appendLine(`> ${prompt.split('\n')[0]}`);
      for await (const delta of manager.client.llm.stream({ model, prompt })) output.append(delta);
      output.appendLine('');
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('gatehouse.serverUrl') || event.affectsConfiguration('gatehouse.tenantKey')) {
        manager.reconfigure();
      }
    }),
  );
  await manager.restore();
  return manager;
}
