// The webhook receiver of the outbox scenario: a lean node:http server that answers 204 to every
// POST and counts them, with the arrival times of the first and the last. GET /stats reads them;
// POST /reset starts over. PORT from the environment.
import { createServer } from 'node:http';

let count = 0;
let first: number | null = null;
let last: number | null = null;
const ids = new Set<string>();

createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/healthz') return void response.end('ok');
  if (request.method === 'GET' && request.url === '/stats') {
    response.setHeader('content-type', 'application/json');
    return void response.end(JSON.stringify({ count, distinct: ids.size, first, last }));
  }
  if (request.url === '/reset') {
    count = 0;
    first = null;
    last = null;
    ids.clear();
    return void response.end('ok');
  }
  request.resume();
  request.on('end', () => {
    const now = Date.now();
    count++;
    first ??= now;
    last = now;
    ids.add(String(request.headers['webhook-id']));
    response.writeHead(204);
    response.end();
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
