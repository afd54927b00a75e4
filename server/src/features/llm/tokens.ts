/**
 * Token counts for what the provider did not report, and for a request's worst case before it
 * is sent: gpt-tokenizer with o200k_base (the GPT-4o family's encoding; the same counts as
 * OpenAI's tiktoken, about ten times faster than js-tiktoken and in half the memory). For other
 * families it is an estimate; the provider's own usage, when it reports one, is what gets charged.
 * Loaded on first use (the ranks take tens of MB), so an instance that never proxies never pays for them.
 */
type Count = (text: string) => number;
let counter: Count | undefined;
let loading: Promise<Count> | undefined;

function loadCounter(): Count | Promise<Count> {
  if (counter) return counter;
  loading ??= import('gpt-tokenizer/encoding/o200k_base').then(({ countTokens }) => {
    counter = (text) => countTokens(text);
    return counter;
  });
  return loading;
}

export async function countTokens(text: string): Promise<number> {
  return (await loadCounter())(text);
}

interface Message {
  role?: unknown;
  content?: unknown;
  name?: unknown;
}

/** Prompt tokens of chat messages, counted the way OpenAI documents (3 per message, 3 to prime the reply). */
export async function countMessageTokens(messages: Message[]): Promise<number> {
  const count = await loadCounter();
  let total = 3;
  for (const message of messages) {
    total += 3;
    for (const value of [message.role, message.name, message.content]) {
      if (typeof value === 'string') total += count(value);
      else if (Array.isArray(value)) {
        for (const part of value) {
          if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
            total += count((part as { text: string }).text);
          }
        }
      }
    }
  }
  return total;
}
