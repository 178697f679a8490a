/**
 * The one error the client throws for an answer it cannot use: the API's error body
 * (`{error: {code, message, field?}}`: code, status and field), a network failure
 * (status 0, code `network`), an answer of the wrong shape (`bad_answer`), or a step of
 * an upload that cannot go on (`storage_rejected`, `file_unreadable`, ...).
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  /** Worth another try (network, 408, 429, 5xx, a claim still in progress). */
  readonly transient: boolean;
  /** The server's Retry-After, in ms, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    /** The API's error code (`version_conflict`, `too_large`, ...) or a client one (`network`, `storage_rejected`, ...). */
    readonly code: string,
    /** HTTP status, 0 when no answer came. */
    readonly status: number,
    /** The request field the API named. */
    readonly field?: string,
    options: ErrorOptions & { transient?: boolean; retryAfterMs?: number | undefined } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.transient = options.transient === true;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** The name the client's first public surface gave it; the same class. */
export const UploadError = ApiError;
export type UploadError = ApiError;

/** A failure worth retrying: network (status 0), 408, 429, 5xx, with the server's Retry-After if any. */
export function transientError(
  message: string,
  status: number,
  retryAfterMs?: number,
  options?: ErrorOptions,
): ApiError {
  return new ApiError(message, status === 0 ? 'network' : 'unavailable', status, undefined, {
    ...options,
    transient: true,
    retryAfterMs,
  });
}

export const abortReason = (signal: AbortSignal): unknown =>
  signal.reason ?? new DOMException('The upload was aborted.', 'AbortError');
