/** The client's retry policy over common/retry: transient ApiErrors only, Retry-After honoured. */
import { retry } from '../../common/retry.ts';
import { ApiError, abortReason } from './errors.ts';
import type { BackoffOptions } from './plan.ts';

export { sleep } from '../../common/retry.ts';

export interface RetryOptions {
  readonly retries: number;
  readonly backoff: BackoffOptions;
  readonly signal: AbortSignal;
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

/** Runs `task` with retries on transient failures; returns its value or throws its last error. */
export async function withRetries<T>(
  task: (attempt: number) => Promise<T>,
  // Without a caller's signal the waits listen to none: a shared never-aborting one would collect
  // a listener per wait in progress.
  options: Omit<RetryOptions, 'signal'> & { readonly signal?: AbortSignal | undefined },
): Promise<T> {
  let tries = 0;
  let failures = 0;
  let waits = 0;
  try {
    return await retry(
      (attempt) => {
        tries = attempt + 1;
        return task(attempt);
      },
      {
        attempts: options.retries + 1 + IN_PROGRESS_WAITS,
        baseMs: options.backoff.baseMs ?? 500,
        capMs: options.backoff.maxMs ?? 15_000,
        jitter: 'equal',
        ...(options.backoff.random ? { random: options.backoff.random } : {}),
        signal: options.signal,
        retryable: (error) => {
          if (isInProgress(error) && waits < IN_PROGRESS_WAITS) {
            waits++;
            return true;
          }
          if (!isTransient(error)) return false;
          failures++;
          return failures <= options.retries;
        },
        minDelayMs: (error) => (isTransient(error) ? error.retryAfterMs : undefined),
      },
    );
  } catch (error) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (isTransient(error) && tries > 1) error.message = `${error.message} (gave up after ${tries} attempts)`;
    throw error;
  }
}
