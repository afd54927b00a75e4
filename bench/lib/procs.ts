import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** `--import tsx`, resolved from the repository so children can run with any working directory. */
const TSX = import.meta.resolve('tsx');

/** Every child still running, by pid: the only processes this bench ever signals. */
const live = new Map<number, ChildProcess>();

export interface StartOptions {
  args?: string[];
  /** Node options before the script; default `--import tsx` (for TypeScript scripts). */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Starts `node --import tsx <script>` (or other node options) with piped stdio and tracks it until it exits. */
export function startNode(script: string, options: StartOptions = {}): ChildProcess {
  const nodeArgs = options.nodeArgs ?? ['--import', TSX];
  const child = spawn(process.execPath, [...nodeArgs, script, ...(options.args ?? [])], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${script}`);
  live.set(pid, child);
  child.once('exit', () => live.delete(pid));
  child.on('error', () => live.delete(pid));
  return child;
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** SIGTERM by pid, then SIGKILL after `graceMs`; says which of the two ended it. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<'exited' | 'killed'> {
  const pid = child.pid;
  if (pid === undefined || exited(child)) return 'exited';
  let killed = false;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signal(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    killed = true;
    signal(pid, 'SIGKILL');
  }, graceMs);
  await done;
  clearTimeout(timer);
  return killed ? 'killed' : 'exited';
}

/** Synchronous last resort (process 'exit', signals): SIGKILL every child still alive, by pid. */
export function killAllNow(): void {
  for (const pid of live.keys()) signal(pid, 'SIGKILL');
  live.clear();
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

/**
 * Runs a bench script as a child: `input` as JSON on its stdin, its stdout parsed as JSON.
 * Killed (by pid) when it outlives `timeoutMs`.
 */
export function runJson<T>(script: string, input: unknown, timeoutMs: number): Promise<T> {
  const child = startNode(script);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  child.stdin?.end(JSON.stringify(input));
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal(child.pid!, 'SIGKILL');
      reject(new Error(`${script} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${script} exited with ${code}:\n${stderr.slice(-2000)}`));
      try {
        resolve(JSON.parse(stdout) as T);
      } catch {
        reject(new Error(`${script} printed no JSON:\n${stdout.slice(-500)}\n${stderr.slice(-2000)}`));
      }
    });
  });
}

/** Reads the whole of stdin as JSON (the input side of runJson). */
export async function readInput<T>(): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/** A port free on 127.0.0.1 right now (the OS picks it; a tiny race with other programs remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200, the child dies, or the deadline passes. */
export async function waitForOk(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`process ${child.pid} exited before ${url} answered`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}

/** One GET with a deadline: the status, or the error's name (e.g. TimeoutError). */
export async function probe(url: string, timeoutMs: number): Promise<string> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    return String(response.status);
  } catch (error) {
    return error instanceof Error ? error.name : 'error';
  }
}

/** Resident set size of a process in MiB, from /proc/<pid>/status (Linux). */
export function rssMiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Direct children of a process, from /proc/<pid>/task/<tid>/children (Linux). */
export function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}
