// The ceiling of the gateway scenarios: the least a Node proxy can do, Fastify forwarding the body
// to the upstream with undici's request (the client Gatehouse uses) and the answer back, with no
// authentication, limits, accounting or parsing beyond JSON. Measured in the same run as direct and
// Gatehouse, it shows how much of the gap to direct is any proxy's (two HTTP hops on the same cores)
// and how much is Gatehouse's. Settings from the environment: PORT, UPSTREAM (the upstream's /v1 URL).
import Fastify from 'fastify';
import { Agent, request } from 'undici';

const upstream = `${process.env.UPSTREAM}/chat/completions`;
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
const app = Fastify({ logger: false });

app.get('/healthz', async () => ({ status: 'ok' }));
app.post('/v1/chat/completions', async (req, reply) => {
  const answer = await request(upstream, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: String(req.headers.authorization) },
    body: JSON.stringify(req.body),
    dispatcher: agent,
  });
  reply.status(answer.statusCode).type(String(answer.headers['content-type'] ?? 'application/json'));
  return answer.body.text();
});

await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });

const close = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', close);
process.on('SIGINT', close);
