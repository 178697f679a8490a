// Entry of the local stack's worker threads (function environments, the DynamoDB emulator).
// Node 20 applies no `--import` loader inside workers, so TypeScript support (tsx) is registered
// here, in this thread, before the thread's own module (the URL passed as its one argv) loads.
import { register } from 'tsx/esm/api';

register();
await import(process.argv[2]);
