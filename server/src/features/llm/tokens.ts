import type { Tiktoken } from 'js-tiktoken/lite';

/**
 * Token counts for what the provider did not report, and for a request's worst case before it
 * is sent: js-tiktoken with o200k_base (the GPT-4o family's encoding). For other families it is
 * an estimate; the provider's own usage, when it reports one, is what gets charged. Loaded on
 * first use (the ranks are a few MB), so an instance that never proxies never pays for them.
 */
let encoder: Promise<Tiktoken> | undefined;

function loadEncoder(): Promise<Tiktoken> {
  encoder ??= Promise.all([import('js-tiktoken/lite'), import('js-tiktoken/ranks/o200k_base')]).then(
    ([{ Tiktoken }, ranks]) => new Tiktoken(ranks.default),
  );
  return encoder;
}

export async function countTokens(text: string): Promise<number> {
  return (await loadEncoder()).encode(text).length;
}

interface Message {
  role?: unknown;
  content?: unknown;
  name?: unknown;
}

/** Prompt tokens of chat messages, counted the way OpenAI documents (3 per message, 3 to prime the reply). */
export async function countMessageTokens(messages: Message[]): Promise<number> {
  const enc = await loadEncoder();
  let total = 3;
  for (const message of messages) {
    total += 3;
    for (const value of [message.role, message.name, message.content]) {
      if (typeof value === 'string') total += enc.encode(value).length;
      else if (Array.isArray(value)) {
        for (const part of value) {
          if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
            total += enc.encode((part as { text: string }).text).length;
          }
        }
      }
    }
  }
  return total;
}
