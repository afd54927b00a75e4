// VS Code's entry point: the logic is in main.ts, which takes the vscode API as a parameter so the
// tests can run it with a stand-in.
import * as vscode from 'vscode';
import { activateWith } from './main.js';

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  await activateWith(vscode, context);
}

export function deactivate(): void {}
