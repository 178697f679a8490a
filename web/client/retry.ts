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

/** Runs `task` with retries on transient failures; returns its value or throws its last error. */
export async function withRetries<T>(
  task: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  let tries = 0;
  try {
    return await retry(
      (attempt) => {
        tries = attempt + 1;
        return task(attempt);
      },
      {
        attempts: options.retries + 1,
        baseMs: options.backoff.baseMs ?? 500,
        capMs: options.backoff.maxMs ?? 15_000,
        jitter: 'equal',
        ...(options.backoff.random ? { random: options.backoff.random } : {}),
        signal: options.signal,
        retryable: isTransient,
        minDelayMs: (error) => (isTransient(error) ? error.retryAfterMs : undefined),
      },
    );
  } catch (error) {
    if (options.signal.aborted) throw abortReason(options.signal);
    if (isTransient(error) && tries > 1) error.message = `${error.message} (gave up after ${tries} attempts)`;
    throw error;
  }
}
