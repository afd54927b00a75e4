import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the receiver answers its next requests (a queue; `ok` once it is empty). */
export type ReceiverBehaviour = 'ok' | 'fail' | 'gone' | 'hang';

export interface WebhookReceiver {
  url: string;
  /** Every request received, in order. */
  received: { headers: IncomingHttpHeaders; body: string }[];
  next(...behaviours: ReceiverBehaviour[]): void;
  close(): Promise<void>;
}

/** A real local webhook receiver (DESIGN: only what leaves the process is replaced, by real local servers). */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const queue: ReceiverBehaviour[] = [];
  const received: WebhookReceiver['received'] = [];
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
    const behaviour = queue.shift() ?? 'ok';
    if (behaviour === 'hang') return;
    const status = behaviour === 'ok' ? 200 : behaviour === 'gone' ? 410 : 500;
    response.writeHead(status, { 'content-type': 'text/plain' });
    response.end(behaviour === 'ok' ? 'thanks' : 'no thanks');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    next: (...behaviours) => queue.push(...behaviours),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
