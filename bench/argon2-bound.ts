// The ceiling for sign-ins: argon2id verifies per second on this machine with the server's
// parameters and the server's hashing concurrency, with no HTTP, database or JSON around them.
import { hash, verify } from '@node-rs/argon2';
import { readInput } from './lib/procs.js';

export interface BoundSpec {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  concurrency: number;
  warmupSeconds: number;
  seconds: number;
}

export interface BoundResult {
  verifiesPerSecond: number;
  verifies: number;
  seconds: number;
  concurrency: number;
}

const spec = await readInput<BoundSpec>();
const password = 'bench-bound correct horse battery staple';
// algorithm 2 = Argon2id (a const enum in the package's types).
const stored = await hash(password, {
  algorithm: 2,
  memoryCost: spec.memoryCost,
  timeCost: spec.timeCost,
  parallelism: spec.parallelism,
});

/** `concurrency` loops of verify until `ms` passes; returns how many completed. */
async function loop(ms: number): Promise<number> {
  const end = performance.now() + ms;
  let count = 0;
  const worker = async () => {
    while (performance.now() < end) {
      if (!(await verify(stored, password))) throw new Error('argon2 verify failed');
      count++;
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  return count;
}

await loop(spec.warmupSeconds * 1000);
const started = performance.now();
const verifies = await loop(spec.seconds * 1000);
const seconds = (performance.now() - started) / 1000;
const result: BoundResult = { verifiesPerSecond: verifies / seconds, verifies, seconds, concurrency: spec.concurrency };
process.stdout.write(`${JSON.stringify(result)}\n`);
