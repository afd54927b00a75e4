// Drop child: drops one bench database described by JSON on stdin. Run with spawnSync from the
// orchestrator's 'exit' and signal handlers, where a database client cannot be awaited.
import { readInput } from './lib/procs.js';
import { dropBenchDatabase } from './lib/usage-db.js';

await dropBenchDatabase(await readInput<{ adminUrl: string; name: string }>());
