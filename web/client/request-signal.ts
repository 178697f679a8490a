/**
 * A signal for one HTTP request. fetch (undici) keeps its 'abort' listener on the signal it is
 * given until that request is garbage-collected, and AbortSignal.any keeps a reference to every
 * signal it made in its sources (Node 20); so a signal that outlives the request (an upload's,
 * a poll loop's, or none at all) is never handed to either, or it piles up listeners
 * (MaxListenersExceededWarning once undici's 1,500 is passed).
 */
import { abortReason } from './errors.ts';

export interface RequestSignal {
  /** Aborts with the caller's reason, or a `TimeoutError` at the time limit. */
  readonly signal: AbortSignal;
  /** Unlinks it from the caller's signal and stops the timer: call once the answer is read. */
  release(): void;
}

/**
 * Without a caller's signal nothing is linked: one shared never-aborting signal would collect a
 * listener per request in flight (a `sync` has 16; Node warns past 10).
 */
export function requestSignal(caller: AbortSignal | undefined, timeoutMs?: number): RequestSignal {
  const own = new AbortController();
  const forward = () => own.abort(abortReason(caller as AbortSignal));
  if (caller?.aborted) forward();
  else caller?.addEventListener('abort', forward, { once: true });
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => own.abort(new DOMException('The operation timed out.', 'TimeoutError')), timeoutMs);
  const release = () => {
    caller?.removeEventListener('abort', forward);
    clearTimeout(timer);
  };
  return { signal: own.signal, release };
}
