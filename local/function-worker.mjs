// Entry of a local function's worker thread. Node 20 applies no `--import` loader inside
// workers, so TypeScript support (tsx) is registered here, in this thread, before the
// runtime and the handler module are loaded.
import { register } from 'tsx/esm/api';

register();
await import('./function-runtime.ts');
