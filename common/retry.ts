/**
 * Waiting between attempts: an abortable sleep, capped exponential backoff with jitter,
 * and a retry loop built from them. Browser-safe (timers and AbortSignal only).
 */

/** The reason an aborted signal rejects with (an AbortError when the signal carries none). */
export const abortReason = (signal: AbortSignal): unknown =>
  signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Like `sleep`, but resolves (never rejects) when the signal aborts: for loops that then check it. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleep(ms, signal);
  } catch {
    // aborted: the caller looks at the signal
  }
}

/**
 * How the wait is spread below its ceiling: `full` draws from [0, ceiling) (spreads racing
 * writers furthest apart), `equal` from [ceiling/2, ceiling) (still grows with every failure).
 */
export type Jitter = 'full' | 'equal';

/**
 * The wait before retry `attempt` (0 for the first): `baseMs * 2^attempt`, never above
 * `capMs`, with jitter so that many clients that failed at the same moment do not retry
 * in step. `random` is a number in [0, 1).
 */
export function backoffMs(
  attempt: number,
  baseMs = 1000,
  capMs = 60_000,
  random: () => number = Math.random,
  jitter: Jitter = 'full',
): number {
  // 2^30 already passes any cap; a larger exponent would only risk Infinity.
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  const wait = jitter === 'full' ? random() * ceiling : ceiling / 2 + (random() * ceiling) / 2;
  return Math.round(wait);
}

export interface RetryOptions {
  /** Tries in all, the first included (>= 1). */
  readonly attempts: number;
  /** @default 1000 */
  readonly baseMs?: number;
  /** @default 60000 */
  readonly capMs?: number;
  /** @default 'full' */
  readonly jitter?: Jitter;
  /** @default Math.random */
  readonly random?: () => number;
  /** Aborts the wait between tries (rejecting with the signal's reason); no new try starts. */
  readonly signal?: AbortSignal;
  /** Whether this error is worth another try. @default every error is */
  readonly retryable?: (error: unknown, attempt: number) => boolean;
  /** A wait the error itself asks for (Retry-After): the longer of it and the backoff is taken. */
  readonly minDelayMs?: (error: unknown) => number | undefined;
  /** Called before each wait. */
  readonly onRetry?: (error: unknown, attempt: number, waitMs: number) => void;
  /** @default sleep */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Calls `fn(attempt)` until it resolves, it throws an error that is not retryable, or
 * `attempts` tries have failed; then the last error is thrown.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  if (!Number.isInteger(options.attempts) || options.attempts < 1) {
    throw new RangeError(`attempts must be an integer >= 1, got ${options.attempts}`);
  }
  const wait = options.sleep ?? sleep;
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      const last = attempt + 1 >= options.attempts;
      if (last || !(options.retryable?.(error, attempt) ?? true)) throw error;
      const backoff = backoffMs(attempt, options.baseMs, options.capMs, options.random, options.jitter);
      const ms = Math.max(backoff, options.minDelayMs?.(error) ?? 0);
      options.onRetry?.(error, attempt, ms);
      await wait(ms, options.signal);
    }
  }
}
