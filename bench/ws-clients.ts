// Many realtime feed clients in one process, for the realtime scenario (lib/realtime-scenarios.ts).
// Input (JSON on stdin): {url, token, count, concurrency}. Opens `count` WebSockets to
// GET /api/realtime, authenticated by subprotocol, at most `concurrency` handshakes at a time,
// and prints {"ready": n, "failed": n} once every socket is authenticated (or refused). From then
// on each message a socket gets is its next broadcast: its arrival time (epoch ms, sub-ms, the
// clock the parent stamps its sends with) is kept by broadcast number. On "report" (a line on
// stdin) it prints {"arrivals": [[…], …], "closed": n}, closes every socket and exits.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

interface Input {
  url: string;
  token: string;
  count: number;
  concurrency: number;
}

const now = () => performance.timeOrigin + performance.now();
const lines = createInterface({ input: process.stdin });
const input = await new Promise<Input>((resolve) => lines.once('line', (line) => resolve(JSON.parse(line) as Input)));

const sockets: WebSocket[] = [];
const arrivals: number[][] = [];
let ready = 0;
let failed = 0;
let closed = 0;

function open(): Promise<void> {
  return new Promise((resolve) => {
    const socket = new WebSocket(input.url, ['gatehouse.v1', `gatehouse.bearer.${input.token}`], {
      perMessageDeflate: false,
    });
    sockets.push(socket);
    let seen = -1;
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      if (ok) ready++;
      else failed++;
      resolve();
    };
    socket.on('message', (raw) => {
      if (seen === -1) {
        seen = 0;
        settle(String(raw).includes('"status":"ok"'));
        return;
      }
      const at = now();
      const broadcast = seen++;
      if (!arrivals[broadcast]) arrivals[broadcast] = [];
      arrivals[broadcast].push(at);
    });
    socket.on('error', () => settle(false));
    socket.on('close', () => {
      closed++;
      settle(false);
    });
  });
}

let next = 0;
await Promise.all(
  Array.from({ length: input.concurrency }, async () => {
    while (next < input.count) {
      next++;
      await open();
    }
  }),
);
closed = 0; // from here on, a close is a socket lost during the measurement
process.stdout.write(`${JSON.stringify({ ready, failed })}\n`);

lines.on('line', (line) => {
  if (line.trim() !== 'report') return;
  process.stdout.write(`${JSON.stringify({ arrivals, closed })}\n`, () => {
    for (const socket of sockets) socket.terminate();
    process.exit(0);
  });
});
