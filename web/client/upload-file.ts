/**
 * `uploadFile`: a browser upload to Media Mirror, straight to S3, in named steps:
 *
 * 0. check the path (upload/claim.ts): `GET /v1/paths`, the claim's answer for the path alone, so
 *    a path the claim would refuse fails before the file is hashed;
 * 1. hash (upload/hash.ts): SHA-256 of the whole file, streamed in a Web Worker;
 * 2. claim (upload/claim.ts): `POST /v1/uploads` with path, size, hash and type. Every answer
 *    carries a proof-of-possession challenge; prove answers it from the file alone, and
 *    content the mirror holds is then committed at once ("deduplicated": no byte is sent);
 *    `proof_not_accepted` means: send the bytes;
 * 3. put single (upload/storage.ts): up to the server's threshold, one PUT to the presigned
 *    URL with the signed headers; or multipart (upload/parts.ts): each missing part hashed,
 *    presigned, PUT with retries and recorded, several at once, then complete;
 * 4. wait for the verdict (upload/verify.ts): poll while the ingest verifies the whole object.
 *
 * `signal` aborts what is in flight and asks the API to abort the upload
 * (`DELETE /v1/uploads/{id}`), which also aborts the S3 multipart upload.
 */
import type { Upload, UploadPending, UploadPendingMultipart } from '../../contracts/api.ts';
import { type ClaimLimits, claimLimitRefusal } from '../../contracts/claim-limits.ts';
import { MirrorApi, newIdempotencyKey, type RequestSigner } from './api.ts';
import { ApiError, abortReason } from './errors.ts';
import type { Hasher } from './hashing.ts';
import { type BackoffOptions, ProgressMeter, reportEvery, type UploadProgress } from './plan.ts';
import { DEFAULT_RETRY_WINDOW_MS, type RetryOptions } from './retry.ts';
import {
  type ClaimInput,
  claim,
  PATH_CHECK_FROM_BYTES,
  prove,
  refusePathBeforeHashing,
} from './upload/claim.ts';
import { openHasher, type RangeHash, rangeHasher } from './upload/hash.ts';
import { type PartsSent, sendParts } from './upload/parts.ts';
import { choosePutter, DEFAULT_STALL_MS, type PutTarget, type Putter, putSingle } from './upload/storage.ts';
import { pollCeilingMs, waitForVerdict } from './upload/verify.ts';

export { newIdempotencyKey } from './api.ts';
export { ApiError, UploadError } from './errors.ts';
export type { Phase, UploadProgress } from './plan.ts';
export { sha256File } from './upload/hash.ts';
export { sendableHeaders } from './upload/storage.ts';

/**
 * Where the API is: its address and how to authorize (a token, or a signer), or a client already
 * made (the CLI shares its own).
 */
export interface ApiConnection {
  /** The API's base URL, e.g. `https://media.example.com` or `http://127.0.0.1:8787`. Not with `client`. */
  readonly api?: string;
  /** Bearer token for the API (the local stack, a JWT authorizer). Not with `sign` or `client`. */
  readonly token?: string;
  /**
   * Signs each request instead of a token: an API behind IAM (`api.auth: "iam"`), with credentials
   * the page holds (a Cognito identity pool's, say); docs/browser.md. Not with `token` or `client`.
   */
  readonly sign?: RequestSigner;
  /** The client to talk to the API through, instead of `api` and `token` or `sign`. */
  readonly client?: MirrorApi;
}

export interface UploadFileOptions extends ApiConnection, UploadSettings {}

export interface UploadSettings {
  /**
   * The file's path in the mirror, e.g. `photos/2024/beach.jpg`. For a file of
   * `pathCheckFromBytes` or more, asked of the API before the file is hashed (`GET /v1/paths`, one
   * request): a path the claim would refuse fails at once, with the claim's error (400, field `path`).
   */
  readonly path: string;
  /**
   * The size from which the path is asked about before hashing; a smaller file learns a refusal
   * from its claim, after a hash that takes about as long as the request would.
   * @default PATH_CHECK_FROM_BYTES (16 MiB)
   */
  readonly pathCheckFromBytes?: number;
  /** @default file.type, else `application/octet-stream` */
  readonly contentType?: string;
  /** Write only if the path's latest version is this one (0: only if the path is new). */
  readonly ifVersion?: number;
  readonly onProgress?: (progress: UploadProgress) => void;
  /** Aborts the upload (in-flight requests, and the upload itself at the API). */
  readonly signal?: AbortSignal;
  /** Parts sent at once. @default 4 */
  readonly partConcurrency?: number;
  /**
   * Retries of each request (a part: its presign and its PUT) after a network error, 408, 429
   * or 5xx. @default 4 (with `client`: the client's own for API calls)
   */
  readonly retries?: number;
  /** Backoff between retries. @default { baseMs: 500, maxMs: 15000 } */
  readonly backoff?: BackoffOptions;
  /**
   * Network errors (no answer) are retried until this long after the first, however many
   * `retries` that takes; a browser that says it is offline (`navigator.onLine`) is waited for
   * whatever this is, without spending a retry. @default 60000, 0 when `retries` is given
   */
  readonly retryWindowMs?: number;
  /**
   * A request that makes no progress this long is abandoned and retried like a network error: a
   * storage PUT with no upload progress (through `fetch`, which reports none: not answered within
   * this plus its bytes at 16 kB/s), and an API call not answered (with `client`: the client's
   * own `timeoutMs`). @default 30000
   */
  readonly stallTimeoutMs?: number;
  /** For tests or instrumentation. @default globalThis.fetch; when given, part PUTs use it too (no byte-level progress). */
  readonly fetch?: typeof fetch;
  /**
   * Where `hash-worker.js` is served. `null` hashes on the calling thread (blocks a page
   * for large files). @default `hash-worker.js` next to this module, when `Worker` exists
   */
  readonly workerUrl?: string | URL | null;
  /**
   * The whole file's SHA-256 (hex), when the caller has it already (the CLI hashes with
   * Node's native SHA-256, faster than WebAssembly): skips the hashing pass, and the path
   * check that would spare it. Parts are still hashed as they are sent. @default computed here
   */
  readonly sha256?: string;
  /**
   * Idempotency-Key of the claim, kept for its retries: a caller that retries the whole upload
   * (a Retry button) passes the same key again, and gets the same upload. If that upload has
   * ended meanwhile (committed: that is the result; rejected or expired: the file is claimed
   * again under a new key, given to `onIdempotencyKey`). @default a random UUID
   */
  readonly idempotencyKey?: string;
  /** The key a new claim was made under, after the upload of the previous one had ended: keep it for the next retry. */
  readonly onIdempotencyKey?: (key: string) => void;
  /**
   * Answer the claim's proof-of-possession challenge, so known content is committed without
   * sending it. `false` skips it (a caller that already tried for this file). @default true
   */
  readonly proof?: boolean;
  /**
   * The deployment's limits (`GET /v1/limits`), when the caller has read them: a file larger than
   * `maxUploadBytes`, or of a type `contentTypes` does not take, fails before it is hashed (minutes
   * for a multi-GiB file), with the error its claim would get (413 `too_large`, field `size`; 415
   * `unsupported_content_type`, field `contentType`). @default none: the claim decides
   */
  readonly limits?: ClaimLimits;
  /** Bytes per read while hashing. @default 4 MiB */
  readonly chunkBytes?: number;
  /**
   * First wait between status polls while the ingest verifies; it doubles up to 2 s, longer for
   * a large file (about 20 polls at 100 MB/s, at most 30 s). @default 250
   */
  readonly pollIntervalMs?: number;
  /**
   * Gives up waiting for the verification after this long (the upload stays pending at
   * the API; its status can still be read). @default 30 minutes
   */
  readonly verifyTimeoutMs?: number;
}

export interface UploadResult {
  readonly status: 'committed' | 'rejected';
  readonly uploadId: string;
  readonly path: string;
  /** The committed version. */
  readonly version?: number;
  /** The content was already stored: nothing was uploaded. */
  readonly deduplicated: boolean;
  /** Why the upload was rejected (e.g. the stored bytes do not match the SHA-256). */
  readonly reason?: string;
  readonly sha256: string;
  readonly size: number;
  /** A multipart upload that continued one already under way. */
  readonly resumed: boolean;
  /** Parts sent by this call (0 for a single PUT or a deduplicated upload). */
  readonly partsSent: number;
  /** Parts the store already held when this call started. */
  readonly partsSkipped: number;
  /** Bytes this call sent to storage. */
  readonly bytesSent: number;
}

/** What the send step did. */
interface Sent extends PartsSent {
  readonly resumed: boolean;
}

/** Everything the steps share: one client, one hasher, one signal for all that is in flight. */
interface Session {
  readonly api: MirrorApi;
  readonly file: Blob;
  readonly size: number;
  readonly contentType: string;
  readonly signal: AbortSignal;
  readonly retry: RetryOptions;
  readonly putter: Putter;
  readonly hasher: Hasher;
  readonly hash: RangeHash;
  readonly report: (progress: UploadProgress) => void;
  readonly settings: UploadSettings;
  uploadId: string | undefined;
  /** A claim sent whose answer has not arrived: the API may have made its upload already. */
  claimInFlight: ClaimInput | undefined;
  /** The claim continued another client's upload (`resumed`): a cancel here must not abort it. */
  joined: boolean;
  /** A new URL for the claimed single PUT, once its own expired; undefined: none can be had. */
  renewPut: (() => Promise<PutTarget>) | undefined;
  /** Bytes this call sent to storage in the send steps it finished. */
  bytesSent: number;
}

type Base = Pick<UploadResult, 'uploadId' | 'path' | 'sha256' | 'size'>;

function openSession(file: Blob, options: UploadFileOptions, inner: AbortController): Session {
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const retries = Math.max(0, options.retries ?? 4);
  const backoff = options.backoff ?? {};
  const retryWindowMs =
    options.retryWindowMs ?? (options.retries === undefined ? DEFAULT_RETRY_WINDOW_MS : 0);
  const stallMs = Math.max(1, options.stallTimeoutMs ?? DEFAULT_STALL_MS);
  const policy = { retries, backoff, retryWindowMs };
  const api = options.client ?? newClient(options, fetchImpl, { ...policy, timeoutMs: stallMs });
  const hasher = openHasher(options);
  return {
    api,
    file,
    size: file.size,
    contentType: options.contentType || (file as { type?: string }).type || 'application/octet-stream',
    signal: inner.signal,
    retry: { ...policy, signal: inner.signal },
    putter: choosePutter(fetchImpl, options.fetch !== undefined, stallMs),
    hasher,
    hash: rangeHasher(file, hasher, inner.signal, options.chunkBytes),
    report: options.onProgress ?? (() => undefined),
    settings: options,
    uploadId: undefined,
    claimInFlight: undefined,
    joined: false,
    renewPut: undefined,
    bytesSent: 0,
  };
}

function newClient(
  options: ApiConnection,
  fetchImpl: typeof fetch,
  policy: { retries: number; backoff: BackoffOptions; retryWindowMs: number; timeoutMs: number },
) {
  const { api, token, sign } = options;
  if (api === undefined || (token === undefined) === (sign === undefined)) {
    throw new TypeError('uploadFile needs `api` with one of `token` or `sign`, or `client`');
  }
  const credentials = sign === undefined ? { token } : { sign };
  return new MirrorApi({ baseUrl: api, ...credentials, fetch: fetchImpl, ...policy });
}

/**
 * Runs `steps` in a session. The caller's signal or a failure aborts everything in flight;
 * on the caller's abort, the upload is abandoned at the API too (best effort), unless it was
 * committed before the abort reached the API: that commit is the result.
 */
async function inSession(
  file: Blob,
  options: UploadFileOptions,
  steps: (session: Session) => Promise<UploadResult>,
): Promise<UploadResult> {
  const inner = new AbortController();
  const outer = options.signal;
  if (outer?.aborted) throw abortReason(outer);
  const forward = () => inner.abort(abortReason(outer as AbortSignal));
  outer?.addEventListener('abort', forward, { once: true });
  const session = openSession(file, options, inner);
  try {
    return await steps(session);
  } catch (error) {
    const aborted = outer?.aborted === true;
    inner.abort(aborted && outer ? abortReason(outer) : error);
    if (!aborted || !outer) throw error;
    const committed = await leave(session);
    if (committed) return committed;
    throw abortReason(outer);
  } finally {
    outer?.removeEventListener('abort', forward);
    session.hasher.close();
  }
}

/** After a cancel: the upload this call made is aborted at the API, or its commit returned. */
async function leave(s: Session): Promise<UploadResult | undefined> {
  if (s.uploadId === undefined && s.claimInFlight !== undefined) await learnClaimedUpload(s, s.claimInFlight);
  // An upload this call joined is another client's too: leaving it is not aborting it for them.
  if (s.uploadId === undefined || s.joined) return undefined;
  return abandon(s, s.uploadId);
}

/**
 * A cancel that came while a claim's answer was on its way: the API may have made the upload, which
 * would wait out its expiry pending. The claim's replay under its Idempotency-Key names it (best
 * effort; a claim that never arrived is made now, to be aborted at once).
 */
async function learnClaimedUpload(s: Session, request: ClaimInput): Promise<void> {
  const replayed = await claim(s.api, request, AbortSignal.timeout(10_000)).catch(() => undefined);
  if (replayed === undefined || replayed.status === 'committed') return;
  s.uploadId = replayed.uploadId;
  s.joined = joined(replayed);
}

/**
 * Aborts the upload at the API (best effort). An upload committed before the abort reached the
 * API (the client was still waiting for its verdict) is not abandoned: its commit, so a cancel that
 * came too late is not reported as one while the version is in the mirror.
 */
async function abandon(s: Session, uploadId: string): Promise<UploadResult | undefined> {
  // On a fresh signal: the upload is abandoned whatever the API answers.
  const signal = AbortSignal.timeout(10_000);
  const ended = await s.api.abortUpload(uploadId, { signal, retry: false }).catch(() => undefined);
  if (ended?.status !== 'committed') return undefined;
  const upload = await s.api.getUpload(uploadId, { signal, retry: false }).catch(() => undefined);
  if (upload?.status !== 'committed') return undefined;
  const base = { uploadId, path: upload.path, sha256: upload.sha256, size: upload.size };
  return verdict(s, base, upload, { parts: 0, skipped: 0, bytes: s.bytesSent, resumed: false });
}

/**
 * Uploads `file` to `options.path`. Resolves when the upload is committed or rejected
 * (rejection: the stored bytes failed verification, see `reason`); throws an `ApiError`
 * when the API refuses it or the network gives out, and the signal's reason (an
 * `AbortError`) when aborted.
 */
export function uploadFile(
  file: Blob & { readonly name?: string },
  options: UploadFileOptions,
): Promise<UploadResult> {
  return inSession(file, options, async (s) => {
    refuseBeyondLimits(s);
    // A caller that has the hash, or a small file, loses next to nothing to a refusal at the claim:
    // no request more for it.
    if (options.sha256 === undefined && file.size >= (options.pathCheckFromBytes ?? PATH_CHECK_FROM_BYTES)) {
      await refusePathBeforeHashing(s.api, options.path, s.signal);
    }
    const sha256 = await hashStep(s);
    return claimAndSend(s, sha256, options.idempotencyKey, true);
  });
}

/** The API's refusal, before the hash: the claim would refuse the file whatever its hash. */
function refuseBeyondLimits(s: Session): void {
  const limits = s.settings.limits;
  const refusal = limits && claimLimitRefusal({ size: s.size, contentType: s.contentType }, limits);
  if (refusal) throw new ApiError(refusal.message, refusal.code, refusal.status, refusal.field);
}

/**
 * Steps 2 to 4 under one Idempotency-Key. A step that fails on an upload that has ended meanwhile
 * is settled by the upload's status, not reported as the step's error:
 * - committed (its verdict answer was lost, or the client it was shared with completed it): the
 *   result is that commit;
 * - rejected or expired, when this claim may not have made it (a caller's key replays a claim
 *   that has since ended; a resumed upload another client cancelled): claimed once more, under a
 *   new key.
 */
async function claimAndSend(
  s: Session,
  sha256: string,
  idempotencyKey: string | undefined,
  mayClaimAgain: boolean,
): Promise<UploadResult> {
  const { settings } = s;
  const request: ClaimInput = {
    path: settings.path,
    size: s.size,
    sha256,
    contentType: s.contentType,
    ifVersion: settings.ifVersion,
    // Kept, not drawn per request: the replay of this very claim is how a single PUT's URL that
    // expired meanwhile is signed again (renewPut).
    idempotencyKey: idempotencyKey ?? newIdempotencyKey(),
  };
  s.claimInFlight = request;
  const claimed = await claim(s.api, request, s.signal).catch((error: unknown) => {
    // The caller's key was first used for another request (a Retry after the app changed the
    // file's path, say): this is a new request, under a new key, or every Retry fails alike.
    if (mayClaimAgain && keyReused(error, idempotencyKey)) return undefined;
    throw error;
  });
  s.claimInFlight = undefined;
  if (claimed === undefined) return claimAndSend(s, sha256, rekey(settings), false);
  s.uploadId = claimed.uploadId;
  s.joined = joined(claimed);
  s.renewPut = () => renewPut(s, request);
  const base = { uploadId: claimed.uploadId, path: claimed.path, sha256, size: s.size };
  if (claimed.status === 'committed') return deduplicated(s, base, claimed.version);
  // This claim may not be what ended its upload: a caller's key replays an earlier claim, a resumed
  // upload is another client's (or this page's own, removed and added again) to cancel.
  const claimAgain = mayClaimAgain && (idempotencyKey !== undefined || s.joined);
  let result: UploadResult | undefined;
  try {
    result = await proveOrSend(s, claimed, base, claimAgain);
  } catch (error) {
    if (s.signal.aborted) throw error;
    const ended = await endedUpload(s, claimed.uploadId, finishing(error));
    if (ended?.status === 'committed') {
      return verdict(s, base, ended, { parts: 0, skipped: 0, bytes: s.bytesSent, resumed: s.joined });
    }
    if (ended && claimAgain) return claimAndSend(s, sha256, rekey(settings), false);
    throw error;
  }
  return result ?? claimAndSend(s, sha256, rekey(settings), false);
}

/**
 * Known content is committed on the proof alone; else the bytes go. Undefined: aborted by someone
 * else once every part was sent, and `claimAgain`.
 */
async function proveOrSend(
  s: Session,
  claimed: UploadPending | UploadPendingMultipart,
  base: Base,
  claimAgain: boolean,
): Promise<UploadResult | undefined> {
  const proven =
    s.settings.proof === false
      ? undefined
      : await prove(s.api, s.file, claimed.uploadId, claimed.challenge, s.signal);
  if (proven) return deduplicated(s, base, proven.version);
  return sendAndVerify(s, claimed, base, claimAgain);
}

/**
 * The single PUT's URL signed again: the claim sent once more under its key, whose replay the API
 * brings up to date with a URL for what is left of the upload's window (docs/api.md, "Retries: the
 * Idempotency-Key"). An upload past that window keeps its old URL, which storage refuses again.
 */
async function renewPut(s: Session, request: ClaimInput): Promise<PutTarget> {
  const again = await claim(s.api, request, s.signal);
  if (again.uploadId !== s.uploadId || !('upload' in again)) {
    throw new ApiError(`claiming again gave no URL for upload ${s.uploadId}`, 'bad_answer', 0);
  }
  return again.upload;
}

/** The reason an upload ended by `DELETE /v1/uploads/{id}` is rejected with (core/uploads.ts). */
const ABORTED = 'aborted';

/** A new Idempotency-Key, given to the caller to keep for its next retry. */
function rekey(settings: Session['settings']): string {
  const key = newIdempotencyKey();
  settings.onIdempotencyKey?.(key);
  return key;
}

/** The API refused the caller's own key as one used for another request. */
const keyReused = (error: unknown, key: string | undefined): boolean =>
  key !== undefined && error instanceof ApiError && error.code === 'idempotency_key_reused';

/**
 * The upload's state once it has ended (committed, rejected or expired); undefined while pending,
 * or unreadable. An upload `finishing` (storage no longer takes its parts: another client
 * completed it) may still be verified: its verdict is waited for.
 */
async function endedUpload(s: Session, uploadId: string, finishing: boolean): Promise<Upload | undefined> {
  const read = finishing
    ? waitForVerdict(s.api, uploadId, verifySettings(s), s.signal)
    : s.api.getUpload(uploadId, { signal: s.signal });
  const upload = await read.catch(() => undefined);
  return upload?.status === 'pending' ? undefined : upload;
}

/** The claim continued another client's multipart upload (same file, same path). */
const joined = (claimed: object): boolean => 'resumed' in claimed && claimed.resumed === true;

/** The step failed because the upload is finishing or finished: S3 has no such upload any more, or the API says so. */
function finishing(error: unknown): boolean {
  if (!(error instanceof ApiError)) return false;
  return error.code === 'upload_finished' || (error.code === 'storage_rejected' && error.status === 404);
}

function verifySettings(s: Session) {
  return {
    pollFirstMs: s.settings.pollIntervalMs ?? 250,
    pollMaxMs: pollCeilingMs(s.size),
    timeoutMs: s.settings.verifyTimeoutMs ?? 30 * 60_000,
  };
}

/**
 * Sends the bytes of an upload claimed already (the CLI claims and proves with its own
 * steps) and waits for the verdict: the rest of `uploadFile`, without a second claim.
 */
export function continueUpload(
  file: Blob,
  claimed: UploadPending | UploadPendingMultipart,
  options: UploadFileOptions & { readonly sha256: string },
): Promise<UploadResult> {
  return inSession(file, options, async (s) => {
    s.uploadId = claimed.uploadId;
    s.joined = joined(claimed);
    const base = { uploadId: claimed.uploadId, path: claimed.path, sha256: options.sha256, size: s.size };
    try {
      return await sendAndVerify(s, claimed, base);
    } catch (error) {
      if (s.signal.aborted) throw error;
      // Another client joined to this upload may have completed or aborted it while parts were
      // still going (storage then answers 404): its outcome is this call's, as in claimAndSend,
      // not storage's words for a file that was committed.
      const ended = await endedUpload(s, claimed.uploadId, finishing(error));
      if (ended === undefined) throw error;
      return verdict(s, base, ended, { parts: 0, skipped: 0, bytes: s.bytesSent, resumed: s.joined });
    }
  });
}

/** Step 1: the whole file's SHA-256, unless the caller has it. */
async function hashStep(s: Session): Promise<string> {
  const meter = new ProgressMeter('hashing', s.size);
  s.report(meter.snapshot());
  const sha256 =
    s.settings.sha256?.toLowerCase() ?? (await s.hash(0, s.size, (bytes) => s.report(meter.set(bytes))));
  s.report(meter.set(s.size));
  return sha256;
}

function deduplicated(s: Session, base: Base, version: number): UploadResult {
  s.report({ phase: 'deduplicated', bytesDone: s.size, bytesTotal: s.size, bytesPerSecond: 0 });
  const nothingSent = { resumed: false, partsSent: 0, partsSkipped: 0, bytesSent: 0 };
  return { ...base, status: 'committed', version, deduplicated: true, ...nothingSent };
}

/** Steps 3 and 4: the bytes (one PUT or parts), then the ingest's verdict. */
function sendAndVerify(
  s: Session,
  claimed: UploadPending | UploadPendingMultipart,
  base: Base,
): Promise<UploadResult>;
function sendAndVerify(
  s: Session,
  claimed: UploadPending | UploadPendingMultipart,
  base: Base,
  claimAgain: boolean,
): Promise<UploadResult | undefined>;
async function sendAndVerify(
  s: Session,
  claimed: UploadPending | UploadPendingMultipart,
  base: Base,
  claimAgain = false,
): Promise<UploadResult | undefined> {
  const sent = 'upload' in claimed ? await sendSingle(s, claimed) : await sendMultipart(s, claimed);
  s.report({ phase: 'verifying', bytesDone: s.size, bytesTotal: s.size, bytesPerSecond: 0 });
  const upload = await waitForVerdict(s.api, claimed.uploadId, verifySettings(s), s.signal);
  // Aborted by someone else once every part was sent (the complete, or the verification, came
  // first): the bytes were fine, the upload is gone, so the caller sends the file again as a new
  // upload, and no "rejected" is reported for a file that goes on.
  if (claimAgain && upload.status === 'rejected' && upload.reason === ABORTED) return undefined;
  return verdict(s, base, upload, sent);
}

async function sendSingle(s: Session, claimed: UploadPending): Promise<Sent> {
  const meter = new ProgressMeter('uploading', s.size);
  s.report(meter.snapshot());
  const body = s.file.slice(0, s.size, s.contentType);
  const stop = reportEvery(meter, s.report);
  try {
    const onSent = (bytes: number) => s.report(meter.set(bytes));
    await putSingle(s.putter, claimed.upload, body, onSent, s.retry, s.renewPut);
  } finally {
    stop();
  }
  s.bytesSent += s.size;
  return { parts: 0, skipped: 0, bytes: s.size, resumed: false };
}

async function sendMultipart(s: Session, claimed: UploadPendingMultipart): Promise<Sent> {
  const concurrency = Math.max(1, Math.floor(s.settings.partConcurrency ?? 4));
  const context = { ...s, uploadId: claimed.uploadId, concurrency };
  const sent = await sendParts(context, claimed.multipart);
  s.bytesSent += sent.bytes;
  return { ...sent, resumed: claimed.resumed };
}

/** The reason the ingest gives an upload whose `ifVersion` another commit overtook (core/ingest.ts). */
const VERSION_CONFLICT = 'version_conflict:';

function verdict(s: Session, base: Base, upload: Upload, sent: Sent): UploadResult {
  if (upload.status === 'rejected' && upload.reason?.startsWith(VERSION_CONFLICT)) {
    // Another writer committed between the claim and the commit: the same answer as a claim that
    // came after it (409 version_conflict), not a "rejected" that reads as failed verification.
    throw new ApiError(
      upload.reason.slice(VERSION_CONFLICT.length).trim(),
      'version_conflict',
      409,
      'ifVersion',
    );
  }
  const committed = upload.status === 'committed';
  s.report({
    phase: committed ? 'committed' : 'rejected',
    bytesDone: s.size,
    bytesTotal: s.size,
    bytesPerSecond: 0,
  });
  return {
    ...base,
    status: committed ? 'committed' : 'rejected',
    ...(upload.version === undefined ? {} : { version: upload.version }),
    ...(upload.reason === undefined ? {} : { reason: upload.reason }),
    deduplicated: upload.deduplicated === true,
    resumed: sent.resumed,
    partsSent: sent.parts,
    partsSkipped: sent.skipped,
    bytesSent: sent.bytes,
  };
}
