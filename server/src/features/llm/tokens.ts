import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Token counts for what the provider did not report, and for a request's worst case before it
 * is sent: gpt-tokenizer with o200k_base (the GPT-4o family's encoding; the same counts as
 * OpenAI's tiktoken, about ten times faster than js-tiktoken and in half the memory). For other
 * families it is an estimate; the provider's own usage, when it reports one, is what gets charged.
 * Loaded on first use (the ranks take tens of MB), so an instance that never proxies never pays for them.
 *
 * Counting is kept linear and never holds the event loop for long (ADR 0014):
 * - Its byte-pair merge is quadratic in the length of one pre-tokenized piece, and a run of
 *   letters or spaces is one piece: a 200,000-letter "word" took about 20 s. Text is cut into
 *   segments of at most SEGMENT_CHARS before it is counted, just before a space that starts a
 *   word where there is one (where the encoder's own pieces begin, so ordinary text counts the
 *   same), else at the limit (a long run then counts within a token per cut).
 * - Large inputs yield to other requests every YIELD_CHARS characters.
 * - `stopAbove` stops counting once the total passes it: the caller only needs to know that.
 */
type Count = (text: string) => number;
let counter: Count | undefined;
let loading: Promise<Count> | undefined;

/** The longest text counted in one piece (the merge's cost grows with its square). */
const SEGMENT_CHARS = 512;
/** Characters counted between two turns of the event loop (about 10 ms at the worst measured rate). */
const YIELD_CHARS = 4_096;

function loadCounter(): Count | Promise<Count> {
  if (counter) return counter;
  loading ??= import('gpt-tokenizer/encoding/o200k_base').then(({ countTokens }) => {
    // Special tokens (<|endoftext|>…) in a user's text are text: counted, never a reason to fail.
    const plain = { disallowedSpecial: new Set<string>() };
    counter = (text) => countTokens(text, plain);
    return counter;
  });
  return loading;
}

/** Where the segment that starts at `start` ends: before a word's space near the limit, else at it. */
function segmentEnd(text: string, start: number): number {
  const limit = start + SEGMENT_CHARS;
  if (limit >= text.length) return text.length;
  const space = text.lastIndexOf(' ', limit);
  if (space > start + SEGMENT_CHARS / 2 && text.charCodeAt(space + 1) > 0x20) return space;
  // No word boundary near: cut at the limit, never inside a surrogate pair.
  const code = text.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
}

/** Counts texts in bounded segments, yielding now and then on large inputs; stops past `stopAbove`. */
async function countAll(texts: string[], base: number, stopAbove: number): Promise<number> {
  const count = await loadCounter();
  let total = base;
  let sinceYield = 0;
  for (const text of texts) {
    for (let start = 0; start < text.length; ) {
      const end = segmentEnd(text, start);
      total += count(start === 0 && end === text.length ? text : text.slice(start, end));
      if (total > stopAbove) return total;
      sinceYield += end - start;
      start = end;
      if (sinceYield >= YIELD_CHARS) {
        sinceYield = 0;
        await nextTurn();
      }
    }
  }
  return total;
}

export function countTokens(text: string): Promise<number> {
  return countAll([text], 0, Number.POSITIVE_INFINITY);
}

interface Message {
  role?: unknown;
  content?: unknown;
  name?: unknown;
}

/** The texts of chat messages that count as prompt tokens: role, name, content (or its text parts). */
function textsOf(messages: Message[]): string[] {
  const texts: string[] = [];
  for (const message of messages) {
    for (const value of [message.role, message.name, message.content]) {
      if (typeof value === 'string') texts.push(value);
      else if (Array.isArray(value)) {
        for (const part of value) {
          if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
            texts.push((part as { text: string }).text);
          }
        }
      }
    }
  }
  return texts;
}

/** OpenAI's framing: 3 tokens per message, 3 to prime the reply. */
const framing = (messages: Message[]) => 3 + 3 * messages.length;

/**
 * Bounds of the prompt's tokens without counting them (microseconds, whatever the size): at
 * least the framing and one token per message's role; at most that plus the texts' UTF-8 bytes
 * (every o200k token is at least one byte).
 */
export function promptBounds(messages: Message[]): { lower: number; upper: number } {
  let bytes = 0;
  for (const text of textsOf(messages)) bytes += Buffer.byteLength(text, 'utf8');
  return { lower: framing(messages) + messages.length, upper: framing(messages) + bytes };
}

/**
 * Prompt tokens of chat messages, counted the way OpenAI documents (3 per message, 3 to prime the
 * reply). With `stopAbove`, counting stops once the total passes it, and the total so far (more
 * than `stopAbove`) is returned.
 */
export function countMessageTokens(messages: Message[], options: { stopAbove?: number } = {}): Promise<number> {
  return countAll(textsOf(messages), framing(messages), options.stopAbove ?? Number.POSITIVE_INFINITY);
}
