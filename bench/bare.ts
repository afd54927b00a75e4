// The baseline: Fastify 5 with one JSON route and nothing else (no logger, no hooks, no plugins).
import Fastify from 'fastify';

const port = Number(process.env.PORT);
const app = Fastify({ logger: false });
app.get('/', async () => ({ ok: true }));
await app.listen({ port, host: '127.0.0.1' });

const close = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', close);
process.on('SIGINT', close);
