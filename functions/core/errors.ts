/**
 * Domain errors. Each carries an HTTP-ish status and a stable code so the API
 * can answer `{error: {code, message, field?}}` without knowing the domain.
 */
export class MirrorError extends Error {
  readonly code: string;
  readonly status: number;
  readonly field: string | undefined;

  constructor(message: string, options: { code: string; status: number; field?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.status = options.status;
    this.field = options.field;
  }
}

/** Input broke a rule: names the field and the rule. */
export class ValidationError extends MirrorError {
  constructor(
    field: string,
    message: string,
    options: { code?: string; status?: number; cause?: unknown } = {},
  ) {
    super(message, {
      code: options.code ?? 'invalid',
      status: options.status ?? 400,
      field,
      cause: options.cause,
    });
  }
}

export class NotFoundError extends MirrorError {
  constructor(message: string, field?: string) {
    super(message, { code: 'not_found', status: 404, ...(field === undefined ? {} : { field }) });
  }
}

/** `ifVersion` did not match the path's current version. */
export class VersionConflictError extends MirrorError {
  readonly currentVersion: number;
  constructor(path: string, expected: number, currentVersion: number) {
    super(`"${path}" is at version ${currentVersion}, the request expected ${expected}`, {
      code: 'version_conflict',
      status: 409,
      field: 'ifVersion',
    });
    this.currentVersion = currentVersion;
  }
}

/** The upload already ended (committed, rejected or expired): its first outcome stands. */
export class UploadFinishedError extends MirrorError {
  constructor(uploadId: string, status: string) {
    super(`upload "${uploadId}" is ${status}`, { code: 'upload_finished', status: 409, field: 'uploadId' });
  }
}

/** A conditional claim lost its race: someone else holds the key. Internal to the commit loop. */
export class ClaimTakenError extends MirrorError {
  constructor(what: string, cause?: unknown) {
    super(`${what} is already claimed`, { code: 'claim_taken', status: 409, cause });
  }
}

/** Stored bytes do not match what the upload declared. */
export class ContentMismatchError extends MirrorError {
  constructor(message: string) {
    super(message, { code: 'content_mismatch', status: 422 });
  }
}

/** An Idempotency-Key already used for a different request. */
export class IdempotencyKeyReusedError extends MirrorError {
  constructor() {
    super('this Idempotency-Key was already used for a different request; use a new key for a new request', {
      code: 'idempotency_key_reused',
      status: 422,
      field: 'Idempotency-Key',
    });
  }
}

/** The first request with this Idempotency-Key is still running: retry later for its answer. */
export class IdempotencyInProgressError extends MirrorError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('a request with this Idempotency-Key is still in progress; retry later for its answer', {
      code: 'idempotency_in_progress',
      status: 409,
      field: 'Idempotency-Key',
    });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
