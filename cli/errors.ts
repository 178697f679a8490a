/**
 * The CLI's errors. Each carries the exit code the process ends with and a
 * message that fits on one line of stderr; `bin/cli.ts` prints `message` only.
 */

/** Any failure the CLI reports to the user (exit code 1 unless stated). */
export class MirrorCliError extends Error {
  override readonly name: string = 'MirrorCliError';
  readonly exitCode: number;

  constructor(message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Bad flags or arguments: exit code 2, like commander's own usage errors. */
export class UsageError extends MirrorCliError {
  override readonly name = 'UsageError';
  constructor(message: string) {
    super(message, { exitCode: 2 });
  }
}

/** Connection settings (endpoints file, --api/--token) are missing or wrong. */
export class ConfigError extends MirrorCliError {
  override readonly name = 'ConfigError';
}

/**
 * The API answered with a non-2xx status. The body is `{error: {code, message, field?}}`;
 * when it is not, `code` is `http_<status>` and `message` the start of the body.
 */
export class ApiError extends MirrorCliError {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly code: string;
  readonly apiMessage: string;
  readonly field: string | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    field?: string | undefined;
    cause?: unknown;
  }) {
    const where = init.field === undefined ? '' : ` (field: ${init.field})`;
    super(`error ${init.status} ${init.code}: ${init.message}${where}`, { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.apiMessage = init.message;
    this.field = init.field;
  }

  /** 5xx and throttling: worth another try while polling. */
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429;
  }
}

/** The API could not be reached at all (refused, DNS, reset, timeout). */
export class ApiUnreachableError extends MirrorCliError {
  override readonly name = 'ApiUnreachableError';
  readonly retryable = true;
}

/** The API answered 2xx with a body that does not have the documented shape. */
export class ApiResponseError extends MirrorCliError {
  override readonly name = 'ApiResponseError';
}

/** The presigned PUT to storage failed. */
export class UploadPutError extends MirrorCliError {
  override readonly name = 'UploadPutError';
  readonly status: number | undefined;
  constructor(message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.status = options.status;
  }
}

/** The ingest verified the bytes and refused them. */
export class UploadRejectedError extends MirrorCliError {
  override readonly name = 'UploadRejectedError';
  readonly uploadId: string;
  readonly reason: string;
  constructor(uploadId: string, path: string, reason: string) {
    super(`upload ${uploadId} of ${path} was rejected: ${reason}`);
    this.uploadId = uploadId;
    this.reason = reason;
  }
}

/** The upload was not committed (nor rejected) within --timeout. */
export class UploadTimeoutError extends MirrorCliError {
  override readonly name = 'UploadTimeoutError';
  readonly uploadId: string;
  constructor(uploadId: string, path: string, seconds: number, lastStatus: string) {
    super(
      `upload ${uploadId} of ${path} not committed after ${seconds} s (still ${lastStatus}); ` +
        `check later with: media-mirror status ${path}`,
    );
    this.uploadId = uploadId;
  }
}
