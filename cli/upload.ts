/**
 * The upload flow: the path asked about (`checkPath`) → hash → create upload → answer its
 * proof-of-possession challenge (content the mirror holds is then committed, nothing sent) →
 * else PUT the bytes → wait for the ingest to verify and commit. Every side effect comes in through
 * `UploadDeps`, so tests drive it with a fake client, a fake PUT and a fake clock.
 */
import { randomUUID } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { sleep } from '../common/retry.ts';
import type { Upload, UploadPending, UploadPendingMultipart } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import { PATH_CHECK_FROM_BYTES, prove } from '../web/client/upload/claim.ts';
import { FALLBACK_CONTENT_TYPE, guessContentType } from './content-type.ts';
import { MirrorCliError, UploadRejectedError, UploadTimeoutError } from './errors.ts';
import { type FileDigest, type HashOptions, hashFile, statRegularFile } from './hash-file.ts';
import { alreadyStored, type SendParts } from './multipart.ts';
import { type ProgressSink, round3 } from './progress.ts';
import type { PutFile } from './put-file.ts';

export interface Clock {
  /** Milliseconds; only differences matter. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => sleep(ms),
};

export interface UploadDeps {
  /** Without `proveUpload` no challenge is answered: the bytes are always sent. */
  client: Pick<MirrorApi, 'createUpload' | 'getUpload'> & Partial<Pick<MirrorApi, 'proveUpload'>>;
  putFile: PutFile;
  clock: Clock;
  progress: ProgressSink;
  /** @default hashFile (streaming SHA-256) */
  hashFile?: (file: string, options: HashOptions) => Promise<FileDigest>;
  /** Sends a file the API wants in parts (and waits for its commit). Required for files above the multipart threshold. */
  sendParts?: SendParts;
  /**
   * Throws the claim's refusal of the path, asked before the file is read (`upload`: `GET
   * /v1/paths`, web/client's refusePathBeforeHashing). `sync` leaves it out: it has hashed by
   * then, and predicts refusals from its listing. @default none: the claim decides, after the hash
   */
  checkPath?: (path: string) => Promise<void>;
  /** The size from which `checkPath` is asked (web/client's rule). @default PATH_CHECK_FROM_BYTES (16 MiB) */
  pathCheckFromBytes?: number;
}

export interface UploadOptions {
  /** Local file to send. */
  file: string;
  /** Logical path in the mirror, e.g. `images/2024/cat.jpg`. */
  path: string;
  /**
   * As given, a type the API refuses is an error. @default guessed from the file's extension, and
   * application/octet-stream if the API refuses the guess
   */
  contentType?: string | undefined;
  /** Commit only if the path's head is this version. */
  ifVersion?: number | undefined;
  /** Wait for the commit. @default true */
  wait?: boolean | undefined;
  /** How long to wait for the commit once the bytes are sent. @default 120 */
  timeoutSeconds?: number | undefined;
  /** @default 250 */
  pollIntervalMs?: number | undefined;
}

export interface UploadResult {
  path: string;
  /** `null` when not waited for (`--no-wait`). */
  version: number | null;
  uploadId: string;
  status: 'committed' | 'pending';
  deduplicated: boolean;
  sha256: string;
  size: number;
  contentType: string;
  /** The type guessed from the extension, which the API refused: `contentType` is the fallback. */
  fellBackFrom?: string | undefined;
  /** Wall time of the whole flow. */
  seconds: number;
}

export const DEFAULT_TIMEOUT_SECONDS = 120;

const ifVersionOf = (options: UploadOptions) =>
  options.ifVersion === undefined ? {} : { ifVersion: options.ifVersion };
export const DEFAULT_POLL_INTERVAL_MS = 250;

/** What the steps share: the deps, the options, what the hash and claim found. */
interface Flow {
  readonly deps: UploadDeps;
  readonly options: UploadOptions;
  readonly base: Pick<UploadResult, 'uploadId' | 'sha256' | 'size' | 'contentType' | 'fellBackFrom'>;
  /** Wall time since the flow started. */
  seconds(): number;
}

export async function uploadFile(deps: UploadDeps, options: UploadOptions): Promise<UploadResult> {
  const { client, clock } = deps;
  const started = clock.now();
  const { sha256, size } = await hashStep(deps, options.file, options.path);

  // The client retries a claim that failed in transit (unreachable, 5xx, 429, "still in
  // progress") under this one Idempotency-Key: however many tries reach the API, one upload.
  const claim = (contentType: string) =>
    client.createUpload(
      { path: options.path, size, sha256, contentType, ...ifVersionOf(options) },
      { idempotencyKey: randomUUID() },
    );
  const { created, contentType, fellBackFrom } = await claimTyped(claim, options);
  const flow: Flow = {
    deps,
    options,
    base: { uploadId: created.uploadId, sha256, size, contentType, ...(fellBackFrom && { fellBackFrom }) },
    seconds: () => round3((clock.now() - started) / 1000),
  };
  if (created.status === 'committed') return committedAtOnce(flow, created);
  // Known content is committed on the proof that this file holds it: nothing is sent.
  const proven = await proveStep(deps, options.file, created);
  if (proven) return committedAtOnce(flow, proven);
  if ('multipart' in created) return sendMultipart(flow, created);
  return sendSingle(flow, created);
}

/**
 * Claims the upload with the given type, or the guessed one; a guess the API refuses (415) is
 * claimed again as application/octet-stream, the type an unknown extension gets, which the
 * deployment may take: refusing the guess kept out nothing but the file (probe U9). Judged by the
 * API's answer, not by `GET /v1/limits` first: only a refused file costs a request more. A refused
 * type the user gave stays refused, as does the guess if the fallback is refused too.
 */
async function claimTyped<T>(
  claim: (contentType: string) => Promise<T>,
  options: UploadOptions,
): Promise<{ created: T; contentType: string; fellBackFrom?: string }> {
  if (options.contentType !== undefined) {
    return { created: await claim(options.contentType), contentType: options.contentType };
  }
  const guessed = guessContentType(options.file);
  try {
    return { created: await claim(guessed), contentType: guessed };
  } catch (refused) {
    if (guessed === FALLBACK_CONTENT_TYPE || !isTypeRefusal(refused)) throw refused;
    try {
      return {
        created: await claim(FALLBACK_CONTENT_TYPE),
        contentType: FALLBACK_CONTENT_TYPE,
        fellBackFrom: guessed,
      };
    } catch (error) {
      throw isTypeRefusal(error) ? refused : error;
    }
  }
}

const isTypeRefusal = (error: unknown) =>
  error instanceof ApiError && error.code === 'unsupported_content_type';

async function hashStep(deps: UploadDeps, file: string, path: string) {
  const { size } = await statRegularFile(file);
  // After the stat (a missing file needs no request to say so), before a byte is read: hashing a
  // large file whose path the claim then refuses took minutes. A small one hashes faster than the
  // request would answer.
  if (size >= (deps.pathCheckFromBytes ?? PATH_CHECK_FROM_BYTES)) await deps.checkPath?.(path);
  deps.progress.phase('hashing', size, { file });
  return (deps.hashFile ?? hashFile)(file, { onBytes: (n) => deps.progress.bytes(n) });
}

function proveStep(deps: UploadDeps, file: string, created: UploadPending | UploadPendingMultipart) {
  const proveUpload = deps.client.proveUpload?.bind(deps.client);
  if (proveUpload === undefined) return undefined;
  // No caller aborts the CLI's proof (the process ends instead), so it passes no signal: one
  // shared never-aborted signal would collect a listener per request in flight (`sync` proves 16
  // at a time; Node warns past 10).
  return openAsBlob(file).then((blob) => prove({ proveUpload }, blob, created.uploadId, created.challenge));
}

function committedAtOnce(flow: Flow, committed: { path: string; version: number }): UploadResult {
  const { uploadId } = flow.base;
  flow.deps.progress.phase('done', undefined, { uploadId, version: committed.version, deduplicated: true });
  return {
    ...flow.base,
    path: committed.path,
    version: committed.version,
    status: 'committed',
    deduplicated: true,
    seconds: flow.seconds(),
  };
}

async function sendMultipart(flow: Flow, created: UploadPendingMultipart): Promise<UploadResult> {
  const { deps, options, base } = flow;
  if (!deps.sendParts)
    throw new MirrorCliError('the API asked for a multipart upload, and no part sender is configured');
  // A resumed upload sends only the parts storage lacks: the phase counts those bytes alone.
  const stored = alreadyStored(created, base.size);
  deps.progress.phase('uploading', base.size - stored, {
    uploadId: created.uploadId,
    parts: created.multipart.partCount,
    ...(stored > 0 ? { storedBytes: stored } : {}),
  });
  // The upload claimed above, continued: one claim however the bytes go.
  const sent = await deps.sendParts({
    file: options.file,
    claimed: created,
    sha256: base.sha256,
    contentType: base.contentType,
    onBytes: (n) => deps.progress.bytes(n),
    timeoutSeconds: options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
  });
  if (sent.status === 'rejected') {
    throw new UploadRejectedError(sent.uploadId, created.path, sent.reason ?? 'rejected');
  }
  deps.progress.phase('done', undefined, { uploadId: sent.uploadId, version: sent.version ?? null });
  const version = sent.version ?? null;
  return {
    ...base,
    path: created.path,
    version,
    status: 'committed',
    deduplicated: false,
    seconds: flow.seconds(),
  };
}

async function sendSingle(flow: Flow, created: UploadPending): Promise<UploadResult> {
  const { deps, options, base } = flow;
  const { uploadId } = created;
  deps.progress.phase('uploading', base.size, { uploadId });
  await deps.putFile({
    url: created.upload.url,
    headers: created.upload.headers,
    automaticHeaders: created.upload.automaticHeaders,
    file: options.file,
    size: base.size,
    onBytes: (n) => deps.progress.bytes(n),
  });
  if (options.wait === false) {
    deps.progress.phase('done', undefined, { uploadId, status: 'pending' });
    const pending = { version: null, status: 'pending' as const, deduplicated: false };
    return { ...base, path: created.path, ...pending, seconds: flow.seconds() };
  }
  deps.progress.phase('verifying', undefined, { uploadId });
  const record = await waitForCommit(deps.client, deps.clock, {
    uploadId,
    path: created.path,
    timeoutSeconds: options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
  });
  const version = record.version;
  if (version === undefined) {
    throw new MirrorCliError(`GET /v1/uploads/${uploadId}: committed without a version`);
  }
  deps.progress.phase('done', undefined, { uploadId, version });
  return {
    ...base,
    path: record.path,
    version,
    status: 'committed',
    deduplicated: false,
    seconds: flow.seconds(),
  };
}

/**
 * Polls `GET /v1/uploads/{id}` until committed (returned) or rejected (UploadRejectedError),
 * or the time is up (UploadTimeoutError). Transient API errors (5xx, 429, unreachable)
 * are retried until the deadline; others are thrown at once.
 */
export async function waitForCommit(
  client: Pick<MirrorApi, 'getUpload'>,
  clock: Clock,
  options: { uploadId: string; path: string; timeoutSeconds: number; pollIntervalMs: number },
): Promise<Upload> {
  const deadline = clock.now() + options.timeoutSeconds * 1000;
  let lastStatus = 'pending';
  for (;;) {
    const poll = await pollOnce(client, options.uploadId, clock.now() >= deadline);
    if (typeof poll === 'string') lastStatus = poll;
    else if (poll.status === 'committed') return poll;
    else if (poll.status === 'rejected' || poll.status === 'expired') {
      throw new UploadRejectedError(options.uploadId, options.path, poll.reason ?? 'no reason given');
    } else lastStatus = poll.status;
    const remaining = deadline - clock.now();
    if (remaining <= 0) {
      throw new UploadTimeoutError(options.uploadId, options.path, options.timeoutSeconds, lastStatus);
    }
    await clock.sleep(Math.min(options.pollIntervalMs, remaining));
  }
}

/** One poll: the upload, or (a transient failure before the deadline) what to report as its status. */
async function pollOnce(client: Pick<MirrorApi, 'getUpload'>, uploadId: string, late: boolean) {
  try {
    return await client.getUpload(uploadId);
  } catch (err) {
    if (!(err instanceof ApiError && err.transient) || late) throw err;
    return `pending; last poll failed: ${err.message}`;
  }
}
