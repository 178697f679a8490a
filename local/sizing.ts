/**
 * How much of each function the local stack runs at once, from the cores it has. On AWS each
 * execution environment brings its own CPU; here every environment is a worker isolate sharing
 * the machine's cores with the emulators, so environments beyond the cores add memory (each has
 * its own SDK, heap and garbage collection) and cold starts, not throughput. Measured on 2 cores
 * (200 x 64 KiB through the API, 16 clients): the API at 10 environments peaked the stack at
 * 947 MB, at 2 at 658 MB, and the run was no slower (docs/local-sizing.md).
 */
import { availableParallelism } from 'node:os';

export interface LocalSizing {
  /** API environments (one request each at a time). */
  readonly api: number;
  /** Receive loops on the ingest queue, each with one batch in flight, and its environments. */
  readonly ingest: { readonly pollers: number; readonly environments: number };
  /** Per S3 target. */
  readonly replicate: { readonly pollers: number; readonly environments: number };
}

/** Lambda's event-source mapping starts with 5 pollers; the API's old fixed size was 10. */
const MAX_POLLERS = 5;
const MAX_API = 10;

export function localSizing(cores: number = availableParallelism()): LocalSizing {
  const n = Math.max(1, Math.floor(cores));
  const pollers = Math.min(MAX_POLLERS, n);
  return {
    api: Math.min(MAX_API, Math.max(2, n)),
    ingest: { pollers, environments: pollers },
    // A replicate batch applies its paths side by side already: one batch at a time per target.
    replicate: { pollers: 1, environments: 1 },
  };
}
