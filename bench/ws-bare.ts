// The realtime scenario's reference (lib/realtime-scenarios.ts): a bare `ws` server on PORT that
// greets each socket as Gatehouse does ({"status":"ok"}) and, on POST /broadcast, sends one
// message to every socket in a plain loop: what Node and `ws` cost on this machine, with nothing
// of Gatehouse's. GET /healthz answers 200.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const server = createServer((request, response) => {
  if (request.method === 'POST' && request.url === '/broadcast') {
    const message = JSON.stringify({
      type: 'update',
      data: { kind: 'task', task: { taskId: 'bare', status: 'processing' } },
      timestamp: Date.now(),
    });
    for (const socket of sockets.clients) socket.send(message);
    response.writeHead(202).end('{}');
    return;
  }
  response.writeHead(request.url === '/healthz' ? 200 : 404).end();
});
const sockets = new WebSocketServer({ server, handleProtocols: () => 'gatehouse.v1' });
sockets.on('connection', (socket) => socket.send('{"type":"auth","data":{"status":"ok"},"timestamp":0}'));
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
