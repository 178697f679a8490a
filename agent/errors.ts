/**
 * What can go wrong while mirroring, sorted into what to do about it:
 *
 * - a **refusal**: this version must not be written (its bytes do not match, its
 *   path would escape the folder, the message disagrees with the ledger). Counted,
 *   logged, never retried in-process; the queue redelivers it until its DLQ.
 * - a **condition**: the world is not ready (disk full, permission denied, network
 *   down, credentials, throttling). One log line when it starts, one when it clears;
 *   the work is retried with capped exponential backoff and nothing is given up.
 * - anything else: a bug or a surprise. Retried a few times, then left for redelivery.
 * - the mirror folder itself moved (MirrorFolderMovedError): the agent stops.
 */
import { dirname } from 'node:path';

export type RefusalCode =
  | 'unsafe-path'
  | 'path-conflict'
  | 'content-mismatch'
  | 'ledger-mismatch'
  | 'unknown-version'
  | 'missing-blob'
  | 'malformed-message'
  /** Larger than the file system takes (EFBIG: FAT32 past 4 GiB, a file size limit). */
  | 'too-large-for-filesystem';

/** This version is refused: it will not be written. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * This version cannot be written yet, and will be: the file the agent holds where its path needs a
 * folder (or the agent's files in the folder where it needs a file) has a newer version in the
 * ledger, their delete, which another feed shard or message group has not brought yet. The API
 * admitted this version only after that delete, so it is retried (the feed cursor waits before
 * it, the message comes back), never refused: a refusal from the feed is not read again.
 */
export class NotYetError extends Error {
  override readonly name = 'NotYetError';
}

export type ConditionKind =
  | 'disk-full'
  | 'permission-denied'
  | 'read-only-filesystem'
  | 'too-many-open-files'
  | 'network'
  | 'throttled'
  | 'aws-unavailable'
  | 'access-denied'
  | 'credentials';

/** Human text for each condition: the one log line an operator sees. */
export const CONDITION_TEXT: Record<ConditionKind, string> = {
  'disk-full':
    'disk full (ENOSPC) writing into the mirror folder or the state folder (--state-dir): free space; retrying with backoff',
  'permission-denied':
    'permission denied writing into the mirror folder or the state folder: fix ownership or mode; retrying with backoff',
  'read-only-filesystem':
    'the mirror folder or the state folder is on a read-only file system; retrying with backoff',
  'too-many-open-files': 'too many open files (EMFILE); retrying with backoff',
  network: 'network error reaching AWS (connection refused, reset, timed out or DNS); retrying with backoff',
  throttled: 'AWS is throttling requests; retrying with backoff',
  'aws-unavailable': 'AWS answered with a server error; retrying with backoff',
  'access-denied':
    "AWS denied access: check the agent's IAM role (docs/agent.md lists what it needs); retrying with backoff",
  credentials:
    'no usable AWS credentials (standard credential chain: env, profile, IAM Roles Anywhere helper); retrying with backoff',
};

const FS_CODES: Record<string, ConditionKind> = {
  ENOSPC: 'disk-full',
  EDQUOT: 'disk-full',
  EACCES: 'permission-denied',
  EPERM: 'permission-denied',
  EROFS: 'read-only-filesystem',
  EMFILE: 'too-many-open-files',
  ENFILE: 'too-many-open-files',
};

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ECONNABORTED',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

const NETWORK_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'NetworkingError',
  'RequestTimeoutException',
]);
const THROTTLE_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'SlowDown',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestThrottledException',
]);
const ACCESS_NAMES = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'ExpiredToken',
  'ExpiredTokenException',
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  // DynamoDB (and the other JSON services) refuse a bad or incomplete signature with 400, not 403.
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
]);

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  errno?: unknown;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
  $fault?: unknown;
}

/** The condition an error stands for, or undefined if it is not a known transient condition. */
export function classifyCondition(error: unknown, depth = 0): ConditionKind | undefined {
  if (error === null || typeof error !== 'object' || depth > 4) return undefined;
  const e = error as ErrorLike;
  // Most specific first: an errno code, then the SDK's error name, then the HTTP answer.
  return (
    conditionOfCode(e.code) ??
    conditionOfName(e.name) ??
    conditionOfResponse(e) ??
    conditionOfWrapped(error, e, depth)
  );
}

function conditionOfCode(code: unknown): ConditionKind | undefined {
  if (typeof code !== 'string' || code === '') return undefined;
  if (FS_CODES[code]) return FS_CODES[code];
  return NETWORK_CODES.has(code) ? 'network' : undefined;
}

function conditionOfName(name: unknown): ConditionKind | undefined {
  if (typeof name !== 'string' || name === '') return undefined;
  if (name === 'CredentialsProviderError' || name === 'TokenProviderError') return 'credentials';
  if (THROTTLE_NAMES.has(name)) return 'throttled';
  if (ACCESS_NAMES.has(name)) return 'access-denied';
  if (NETWORK_NAMES.has(name)) return 'network';
  return undefined;
}

function conditionOfResponse(e: ErrorLike): ConditionKind | undefined {
  const status = e.$metadata?.httpStatusCode;
  if (status === 403) return 'access-denied';
  if (status === 429 || status === 503) return 'throttled';
  if (status !== undefined && status >= 500) return 'aws-unavailable';
  if (e.$fault === 'server') return 'aws-unavailable';
  return undefined;
}

/** The SDK wraps socket errors; so does fetch (`TypeError: fetch failed` with a cause). */
function conditionOfWrapped(error: object, e: ErrorLike, depth: number): ConditionKind | undefined {
  if (e.cause !== undefined) return classifyCondition(e.cause, depth + 1);
  if (!(error instanceof AggregateError)) return undefined;
  for (const inner of error.errors) {
    const kind = classifyCondition(inner, depth + 1);
    if (kind) return kind;
  }
  return undefined;
}

/** Local file-system conditions clear when a write succeeds; the others when an AWS call does. */
export const LOCAL_CONDITIONS: readonly ConditionKind[] = [
  'disk-full',
  'permission-denied',
  'read-only-filesystem',
  'too-many-open-files',
];
export const REMOTE_CONDITIONS: readonly ConditionKind[] = [
  'network',
  'throttled',
  'aws-unavailable',
  'access-denied',
  'credentials',
];

/** The agent was asked to stop while this work was under way. */
class StoppedError extends Error {
  override readonly name = 'StoppedError';
  constructor() {
    super('the agent is stopping');
  }
}

export function isAbort(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'AbortError' || error instanceof StoppedError;
}

/** A configuration problem: the agent cannot start. Exit code 78 (EX_CONFIG), which systemd is told not to restart. */
export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
  readonly exitCode = 78;
}

/** How the agent command ends: a one-line message for stderr and the process's exit code. */
export class AgentExitError extends Error {
  override readonly name: string = 'AgentExitError';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Exit code of an agent whose mirror folder moved: EX_CANTCREAT, `status=73/CANTCREAT` in systemd. */
const MIRROR_FOLDER_MOVED_EXIT = 73;

/**
 * The mirror folder's path no longer names the folder the agent opened at start (moved, replaced,
 * a symlink put in its place): the agent stops writing and exits 73 (EX_CANTCREAT), which the
 * unit does not restart either, as a restart would follow the new path (docs/agent.md, "Never
 * writing outside `--dir`").
 */
export class MirrorFolderMovedError extends AgentExitError {
  override readonly name = 'MirrorFolderMovedError';
  constructor(
    readonly dir: string,
    /** What the path names now: `a symlink`, `another folder`, `not a folder`, `gone`. */
    readonly now: string,
  ) {
    super(
      `the mirror folder ${dir} is now ${now}, no longer the folder the agent started on: nothing more ` +
        `is written. Find who changed it (whoever can write ${dirname(dir)}), put the folder back at ` +
        `${dir} (with its state), then start the agent again`,
      MIRROR_FOLDER_MOVED_EXIT,
    );
  }
}
