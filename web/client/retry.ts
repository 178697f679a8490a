/**
 * The client's retry policy over common/retry: transient ApiErrors only, Retry-After honoured;
 * no try is spent while the browser says it is offline, and network errors may be retried over a
 * window of time rather than a count.
 */
import { retry, sleep } from '../../common/retry.ts';
import { ApiError, abortReason } from './errors.ts';
import type { BackoffOptions } from './plan.ts';

export { sleep } from '../../common/retry.ts';

export interface RetryOptions {
  readonly retries: number;
  readonly backoff: BackoffOptions;
  readonly signal: AbortSignal;
  /**
   * Network errors (no answer at all) are retried until this long has passed since the first
   * failure, however many `retries` that takes. @default 0
   */
  readonly retryWindowMs?: number | undefined;
}

/**
 * The window uploads give network errors unless told a number of retries: a Wi-Fi handover or a
 * short drop lasts seconds, and with 4 retries and the default backoff an upload of any size
 * failed after 4 to 8 s of it.
 */
export const DEFAULT_RETRY_WINDOW_MS = 60_000;

/** How often a client that is offline looks again. */
const ONLINE_POLL_MS = 500;

/** The browser knows it has no network (`navigator.onLine`); never so where there is no such flag (Node). */
const offline = (): boolean =>
  typeof navigator !== 'undefined' && (navigator as { onLine?: unknown }).onLine === false;

/** Waits while offline; true if it waited (the network is back: try again now). */
async function untilOnline(signal: AbortSignal | undefined): Promise<boolean> {
  if (!offline()) return false;
  while (offline()) await sleep(ONLINE_POLL_MS, signal);
  return true;
}

const isTransient = (error: unknown): error is ApiError => error instanceof ApiError && error.transient;

/**
 * Waits for an Idempotency-Key still held by an earlier try of the same request (409
 * `idempotency_in_progress`), on top of the retries for failures. That answer is no failure: its
 * Retry-After says when the earlier try's invocation has surely ended and the key can be taken
 * over (docs/api.md). One wait covers a try that died; more cover a takeover that died too.
 */
export const IN_PROGRESS_WAITS = 3;

const isInProgress = (error: unknown): error is ApiError =>
  isTransient(error) && error.code === 'idempotency_in_progress';

type Policy = Omit<RetryOptions, 'signal'>;

/**
 * Whether a failure is worth another try: a claim in progress (a few waits), anything transient
 * while offline (the wait is for the network; no retry is spent), else up to `retries` failures,
 * and network errors for `retryWindowMs` from the first.
 */
function retryDecision(options: Policy): (error: unknown) => boolean {
  let failures = 0;
  let waits = 0;
  let firstFailure: number | undefined;
  return (error) => {
    if (isInProgress(error) && waits < IN_PROGRESS_WAITS) {
      waits++;
      return true;
    }
    if (!isTransient(error)) return false;
    if (offline()) return true;
    failures++;
    // Time passed, not the wall clock, which a step (NTP, a resumed VM) moves by hours either way.
    firstFailure ??= performance.now();
    if (failures <= options.retries) return true;
    return error.status === 0 && performance.now() - firstFailure < (options.retryWindowMs ?? 0);
  };
}

/** Runs `task` with retries on transient failures; returns its value or throws its last error. */
export async function withRetries<T>(
  task: (attempt: number) => Promise<T>,
  // Without a caller's signal the waits listen to none: a shared never-aborting one would collect
  // a listener per wait in progress.
  options: Omit<RetryOptions, 'signal'> & { readonly signal?: AbortSignal | undefined },
): Promise<T> {
  let tries = 0;
  try {
    return await retry(
      (attempt) => {
        tries = attempt + 1;
        return task(attempt);
      },
      {
        // retryDecision bounds the tries: offline waits and the window are not a count.
        attempts: Number.MAX_SAFE_INTEGER,
        baseMs: options.backoff.baseMs ?? 500,
        capMs: options.backoff.maxMs ?? 15_000,
        jitter: 'equal',
        ...(options.backoff.random ? { random: options.backoff.random } : {}),
        signal: options.signal,
        retryable: retryDecision(options),
        minDelayMs: (error) => (isTransient(error) ? error.retryAfterMs : undefined),
        // Back online, the next try goes at once; the backoff is for a network that answers badly.
        sleep: async (ms, signal) => {
          if (!(await untilOnline(signal))) await sleep(ms, signal);
        },
      },
    );
  } catch (error) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (isTransient(error) && tries > 1) error.message = `${error.message} (gave up after ${tries} attempts)`;
    throw error;
  }
}
