/**
 * Idempotency-Key: a client that retries a request (a network error, Uppy's Retry button) gets the
 * first request's answer instead of a second effect (another upload, another version).
 *
 * Built on the ledger's own conditional claim (an `IDEM#<key>` item holding the request's hash and
 * its first answer; the key is its caller's, callerScopedKey) rather than Powertools' idempotency
 * utility: the check sits in the domain core, which imports no AWS SDK and runs on any Ledger
 * (tests drive it with dynalite and a fake clock); it follows the ledger's named conditions on the
 * table it already has; it keys on a header and a canonical request the API has already validated,
 * not on the raw event; and it adds no dependency.
 * The expiry is checked by the claim's condition, not left to DynamoDB's TTL (late on AWS, absent
 * in dynalite).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { FileVersion } from '../../contracts/model.js';
import { IdempotencyInProgressError, IdempotencyKeyReusedError, ValidationError } from './errors.js';
import type { Clock, IdempotencyLedger, Metrics, VersionLedger } from './ports.js';

/** A key is remembered this long; after that the same key starts a new request. */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * How long a claim holds its key when the caller cannot say how long its invocation may still run
 * (no Lambda context): above the API's 29 s timeout. The API passes its invocation's remaining time
 * instead (see runOnce).
 */
export const IDEMPOTENCY_LOCK_MS = 60 * 1000;

export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

/** A UUID fits, and so does any opaque token of the usual safe characters. */
const KEY_PATTERN = /^[A-Za-z0-9._:~-]{1,128}$/;

/** The header's value, checked; undefined when the request has none. */
export function parseIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!KEY_PATTERN.test(value)) {
    throw new ValidationError(
      IDEMPOTENCY_HEADER,
      `${IDEMPOTENCY_HEADER} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '~' and '-' (a UUID fits)`,
      { code: 'invalid_idempotency_key' },
    );
  }
  return value;
}

/**
 * The key a request is remembered under: its caller's. A key names one caller's retries: another
 * caller sending the same key (leaked, logged, guessed) must not be answered with the first one's
 * answer (its upload id, its presigned URLs), nor be refused or held up by it. `caller` is who the
 * API's authorizer says is calling; undefined where every caller has the one identity (a shared
 * bearer token), and the key is the key. A hash: the same length whatever the identity (an ARN
 * may be long), and no caller's name in the table's keys. A key holds no `#` (KEY_PATTERN), so no
 * key sent as it is can name another caller's.
 */
export function callerScopedKey(caller: string | undefined, key: string | undefined): string | undefined {
  if (key === undefined || caller === undefined) return key;
  const digest = createHash('sha256').update(caller).digest('hex');
  return `${digest.slice(0, 32)}#${key}`;
}

/** What the API answered: replayed as it was for a retry with the same key. */
export interface Answer {
  readonly statusCode: number;
  readonly body: unknown;
}

export interface IdempotencyDeps {
  readonly ledger: IdempotencyLedger;
  readonly clock: Clock;
  readonly metrics?: Metrics | undefined;
}

/** JSON with keys sorted at every level: the same request hashes the same whatever its key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function requestHash(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

export interface RunOnceOptions {
  /**
   * How long the invocation running this request may still run (Lambda's
   * `getRemainingTimeInMillis()`). The claim holds the key until then: past that deadline the
   * invocation has been ended, so a retry may take the key over (Powertools' idempotency utility
   * does the same with its in-progress expiry). @default IDEMPOTENCY_LOCK_MS
   */
  readonly remainingMs?: number | undefined;
}

/**
 * Runs `run` once per key: the first request's successful answer is stored and returned to every
 * retry with the same key and the same request (`replayed: true`). The same key with another request
 * is refused (422); a retry while the first still runs is told to come back (409, with the seconds
 * until the first request's invocation has surely ended). A retry after that takes the key over and
 * runs afresh: the domain's own checks (identical-to-head, a delete or a restore finding the version
 * it committed, a proof finding its own commit) answer what the dead request had done. A failed request stores
 * nothing and frees the key, so its retry runs afresh too.
 *
 * `request` identifies the operation and everything that shapes its effect (route, path, body).
 */
export async function runOnce(
  deps: IdempotencyDeps,
  key: string | undefined,
  request: unknown,
  run: () => Promise<Answer>,
  options: RunOnceOptions = {},
): Promise<Answer & { replayed: boolean }> {
  if (key === undefined) return { ...(await run()), replayed: false };
  const now = deps.clock.now();
  const hash = requestHash(request);
  const claimToken = randomUUID();
  const lockMs = Math.max(0, options.remainingMs ?? IDEMPOTENCY_LOCK_MS);
  const holder = await deps.ledger.claimIdempotencyKey({
    key,
    requestHash: hash,
    claimToken,
    lockedUntil: new Date(now.getTime() + lockMs).toISOString(),
    expiresAt: new Date(now.getTime() + IDEMPOTENCY_KEY_TTL_MS).toISOString(),
    now: now.toISOString(),
  });
  if (holder) {
    if (holder.requestHash !== hash) throw new IdempotencyKeyReusedError();
    if (holder.status === 'completed' && holder.response !== undefined) {
      deps.metrics?.count('IdempotentReplays');
      return { ...(JSON.parse(holder.response) as Answer), replayed: true };
    }
    throw new IdempotencyInProgressError(secondsUntilTakeover(holder.lockedUntil, now));
  }

  let answer: Answer;
  try {
    answer = await run();
  } catch (error) {
    await deps.ledger.releaseIdempotencyKey(key, claimToken).catch(() => undefined);
    throw error;
  }
  if (answer.statusCode >= 200 && answer.statusCode < 300) {
    const stored = { statusCode: answer.statusCode, body: answer.body };
    // The effect has happened: a failure to record it must not turn the answer into an error.
    await deps.ledger.completeIdempotencyKey(key, claimToken, JSON.stringify(stored)).catch(() => {
      deps.metrics?.count('IdempotencyRecordFailed');
    });
  } else {
    await deps.ledger.releaseIdempotencyKey(key, claimToken).catch(() => undefined);
  }
  return { ...answer, replayed: false };
}

/**
 * The id a request sent under an Idempotency-Key commits its version with (the version's
 * `uploadId`): the same for every retry of it, so a retry that takes over a dead request's key and
 * runs afresh finds the version that request committed (see findOwnCommit). `parts` name what the
 * request changes (its path, and what shapes the version it commits).
 */
export function keyedRequestId(
  operation: string,
  key: string,
  ...parts: readonly (string | number)[]
): string {
  const digest = createHash('sha256')
    .update([key, ...parts].join('\n'))
    .digest('hex');
  return `${operation}-${digest.slice(0, 32)}`;
}

/** Versions read per page while looking for a request's own commit below the head. */
const OWN_COMMIT_PAGE = 25;

/**
 * The version the request `requestId` (keyedRequestId) committed, if it did: a retry of that
 * request answers it instead of committing again. The head is looked at first; below it, the
 * versions committed within the key's lifetime (IDEMPOTENCY_KEY_TTL_MS: an older commit cannot be
 * this key's), newest first. Not only the head: between a dead request's commit and its retry
 * other requests may have committed, and committing again would undo their versions (a second
 * delete wiping a later upload).
 */
export async function findOwnCommit(
  ledger: Pick<VersionLedger, 'listVersions'>,
  path: string,
  head: FileVersion | undefined,
  requestId: string | undefined,
  now: Date,
): Promise<FileVersion | undefined> {
  if (requestId === undefined || head === undefined) return undefined;
  if (head.uploadId === requestId) return head;
  const since = now.getTime() - IDEMPOTENCY_KEY_TTL_MS;
  let before = head.version;
  let oldest = head;
  while (before > 1 && Date.parse(oldest.committedAt) >= since) {
    const page = await ledger.listVersions(path, { limit: OWN_COMMIT_PAGE, before });
    const own = page.find((v) => v.uploadId === requestId && Date.parse(v.committedAt) >= since);
    if (own) return own;
    const last = page.at(-1);
    if (last === undefined || page.length < OWN_COMMIT_PAGE) return undefined;
    oldest = last;
    before = last.version;
  }
  return undefined;
}

/**
 * Whole seconds until a retry can take the key over: the claim's lock has to be passed (the ledger's
 * condition is `lockedUntil < now`), so this lands strictly after it. At least 1.
 */
function secondsUntilTakeover(lockedUntil: string | undefined, now: Date): number {
  const left = lockedUntil === undefined ? 0 : Date.parse(lockedUntil) - now.getTime();
  return Number.isFinite(left) && left >= 0 ? Math.floor(left / 1000) + 1 : 1;
}

/**
 * Committing the content the path already holds (same SHA-256, size and type, head not deleted)
 * makes no new version: the head is the answer, unless the caller asks for a new version. The
 * head is what `GET /v1/files/{path}` already shows the same caller: nothing is revealed, and no
 * stored content is claimed, so proof of possession is not needed for it.
 */
export async function unchangedHead(
  ledger: Pick<VersionLedger, 'getHead'>,
  request: {
    readonly path: string;
    readonly sha256: string;
    readonly size: number;
    readonly contentType: string;
    readonly newVersion?: boolean | undefined;
  },
): Promise<{ version: number; uploadId: string } | undefined> {
  if (request.newVersion === true) return undefined;
  const head = await ledger.getHead(request.path);
  if (
    !head ||
    head.deleted ||
    head.sha256 !== request.sha256 ||
    head.size !== request.size ||
    head.contentType !== request.contentType
  )
    return undefined;
  return { version: head.version, uploadId: head.uploadId };
}
