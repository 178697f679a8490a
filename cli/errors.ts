/**
 * The CLI's errors. Each carries the exit code the process ends with and a
 * message that fits on one line of stderr; `bin/cli.ts` prints `message` only.
 */
import type { ApiError } from '../web/client/errors.ts';

/** The exit codes of every command (docs/cli.md): scripts branch on these. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** The path (or the version, or the target's copy) does not exist. */
  notFound: 3,
  /** `--if-version` did not match the path's head, or the path changed meanwhile. */
  conflict: 4,
  /** Downloaded bytes did not match the SHA-256 the mirror recorded: nothing was written. */
  verifyFailed: 5,
  /** `sync --wait`: a target did not hold every file within `--wait-timeout`. */
  timeout: 6,
} as const;

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

/** No such path, version or copy: exit 3. */
export class NotFoundCliError extends MirrorCliError {
  override readonly name = 'NotFoundCliError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, exitCode: EXIT.notFound });
  }
}

/**
 * The exit code for an API error: 3 when what was named does not exist, 4 on a version
 * conflict, else 1.
 */
export function apiExitCode(error: ApiError): number {
  if (error.status === 404 && error.code !== 'no_route') return EXIT.notFound;
  if (error.code === 'version_conflict') return EXIT.conflict;
  return EXIT.failure;
}

/** Connection settings (endpoints file, --api/--token) are missing or wrong. */
export class ConfigError extends MirrorCliError {
  override readonly name = 'ConfigError';
}

/**
 * How the CLI prints the API client's errors (web/client's ApiError): one line with the
 * status, the API's code and the field it named; an unreachable API or an answer of the
 * wrong shape as the client words it.
 */
export function describeApiError(error: ApiError): string {
  if (error.code === 'network' || error.code === 'bad_answer') return error.message;
  // Not the API's answer (status 0): the local file. Read as a file-backed Blob, a file changed
  // since it was hashed can no longer be read ("The blob could not be read").
  if (error.code === 'file_unreadable') {
    return `${error.message} (was the file changed, moved or deleted after it was hashed? Nothing was committed; upload it again)`;
  }
  const where = error.field === undefined ? '' : ` (field: ${error.field})`;
  // Status 0: not an answer of the API's (the client's own verdict, a timeout of its wait).
  const status = error.status === 0 ? '' : ` ${error.status}`;
  return `error${status} ${error.code}: ${error.message}${where}`;
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
    // An `--if-version` that lost its race at the commit is the conflict a refused claim is (exit 4):
    // a script re-reads and retries on 4 either way (probe V3).
    super(`upload ${uploadId} of ${path} was rejected: ${reason}`, {
      exitCode: reason.startsWith('version_conflict:') ? EXIT.conflict : EXIT.failure,
    });
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
