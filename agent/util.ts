/**
 * Small concurrency helpers the agent is built from: a fair semaphore, a per-key
 * lock, its backoff, a bandwidth limiter and the folder sync (sleep and backoff themselves:
 * common/retry.ts).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { backoffMs as commonBackoffMs, sleep } from '../common/retry.ts';

/**
 * The agent's capped exponential backoff (common/retry.ts) with equal jitter: the wait is
 * 50-100 % of the ceiling, so it still grows with every failure, while many agents that lost
 * the same network at the same moment do not retry in step.
 */
export function backoffMs(attempt: number, baseMs = 1000, capMs = 60_000, random = Math.random): number {
  return commonBackoffMs(attempt, baseMs, capMs, random, 'equal');
}

/**
 * Waits until `wake` is called, `signal` aborts or `ms` pass (never rejects). `onWaiting` receives
 * the wake function. Whichever ends the wait unhooks the rest: the signal outlives every wait, and
 * a listener left on it per wait would pile up.
 */
export function wakeableWait(
  signal: AbortSignal,
  onWaiting: (wake: () => void) => void,
  ms?: number,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    onWaiting(done);
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

/** A counting semaphore that serves waiters in arrival order. */
export class Semaphore {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`semaphore size must be >= 1, got ${size}`);
    this.available = size;
  }

  get inUse(): number {
    return this.size - this.available;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  async acquire(): Promise<() => void> {
    if (this.available > 0) {
      this.available--;
    } else {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.available++;
    };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await task();
    } finally {
      release();
    }
  }
}

/** Serialises work per key (one path at a time), with no limit across keys. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      done();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  get size(): number {
    return this.tails.size;
  }
}

/**
 * A shared byte budget per second across every download (`--max-bytes-per-second`):
 * each caller reports the bytes it has just moved and waits until the budget allows them.
 */
export class BandwidthLimiter {
  private nextFreeAt = 0;

  constructor(
    private readonly bytesPerSecond: number | undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!this.bytesPerSecond) return;
    const t = this.now();
    const start = Math.max(t, this.nextFreeAt);
    this.nextFreeAt = start + (bytes / this.bytesPerSecond) * 1000;
    const wait = this.nextFreeAt - t;
    // Short waits are not worth a timer: let the debt build up to ~20 ms.
    if (wait > 20) await sleep(wait, signal);
  }
}

/** Counts events in a sliding window: the status line's files/s and bytes/s. */
export class RateWindow {
  private readonly events: { at: number; amount: number }[] = [];

  constructor(
    private readonly windowMs = 10_000,
    // Time passed: on the wall clock, a step back kept hours of events in the window.
    private readonly now: () => number = () => performance.now(),
  ) {}

  add(amount = 1): void {
    this.events.push({ at: this.now(), amount });
    this.trim();
  }

  perSecond(): number {
    this.trim();
    const total = this.events.reduce((sum, e) => sum + e.amount, 0);
    return total / (this.windowMs / 1000);
  }

  private trim(): void {
    const horizon = this.now() - this.windowMs;
    while (this.events.length > 0 && (this.events[0] as { at: number }).at < horizon) this.events.shift();
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Syncs a folder, so a rename or removal in it is on disk. A file system that cannot sync a folder
 * (EINVAL, ENOTSUP: SMB/CIFS shares, some FUSE and shared folders of virtual machines) is not an
 * error: the renamed file is already synced and in place, nothing more can be done there, and
 * failing would stop the agent from writing to such a folder at all.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw error;
  } finally {
    await handle.close();
  }
}
