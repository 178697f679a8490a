/**
 * The upload flow: hash → create upload → answer its proof-of-possession challenge
 * (content the mirror holds is then committed, nothing sent) → else PUT the bytes →
 * wait for the ingest to verify and commit. Every side effect comes in through
 * `UploadDeps`, so tests drive it with a fake client, a fake PUT and a fake clock.
 */
import { randomUUID } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import type { Upload } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import { prove } from '../web/client/upload/claim.ts';
import { guessContentType } from './content-type.ts';
import { MirrorCliError, UploadRejectedError, UploadTimeoutError } from './errors.ts';
import { type FileDigest, type HashOptions, hashFile, statRegularFile } from './hash-file.ts';
import type { SendParts } from './multipart.ts';
import { type ProgressSink, round3 } from './progress.ts';
import type { PutFile } from './put-file.ts';

export interface Clock {
  /** Milliseconds; only differences matter. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
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
}

export interface UploadOptions {
  /** Local file to send. */
  file: string;
  /** Logical path in the mirror, e.g. `images/2024/cat.jpg`. */
  path: string;
  /** @default guessed from the file's extension */
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
  /** Wall time of the whole flow. */
  seconds: number;
}

export const DEFAULT_TIMEOUT_SECONDS = 120;

/** No caller aborts the CLI's proof: the process ends instead. */
const NEVER = new AbortController().signal;

const ifVersionOf = (options: UploadOptions) =>
  options.ifVersion === undefined ? {} : { ifVersion: options.ifVersion };
export const DEFAULT_POLL_INTERVAL_MS = 250;

export async function uploadFile(deps: UploadDeps, options: UploadOptions): Promise<UploadResult> {
  const { client, clock, progress } = deps;
  const hash = deps.hashFile ?? hashFile;
  const started = clock.now();
  const contentType = options.contentType ?? guessContentType(options.file);

  const { size: statSize } = await statRegularFile(options.file);
  progress.phase('hashing', statSize, { file: options.file });
  const { sha256, size } = await hash(options.file, { onBytes: (n) => progress.bytes(n) });

  // The client retries a claim that failed in transit (unreachable, 5xx, 429, "still in
  // progress") under this one Idempotency-Key: however many tries reach the API, one upload.
  const created = await client.createUpload(
    { path: options.path, size, sha256, contentType, ...ifVersionOf(options) },
    { idempotencyKey: randomUUID() },
  );
  const base = { uploadId: created.uploadId, sha256, size, contentType };
  const seconds = () => round3((clock.now() - started) / 1000);
  const committedAtOnce = (committed: { path: string; version: number }): UploadResult => {
    progress.phase('done', undefined, {
      uploadId: created.uploadId,
      version: committed.version,
      deduplicated: true,
    });
    return {
      ...base,
      path: committed.path,
      version: committed.version,
      status: 'committed',
      deduplicated: true,
      seconds: seconds(),
    };
  };
  if (created.status === 'committed') return committedAtOnce(created);
  // Known content is committed on the proof that this file holds it: nothing is sent.
  const proven = client.proveUpload
    ? await prove(
        { proveUpload: client.proveUpload.bind(client) },
        await openAsBlob(options.file),
        created.uploadId,
        created.challenge,
        NEVER,
      )
    : undefined;
  if (proven) return committedAtOnce(proven);

  if ('multipart' in created) {
    if (!deps.sendParts)
      throw new MirrorCliError('the API asked for a multipart upload, and no part sender is configured');
    progress.phase('uploading', size, { uploadId: created.uploadId, parts: created.multipart.partCount });
    // The upload claimed above, continued: one claim however the bytes go.
    const sent = await deps.sendParts({
      file: options.file,
      claimed: created,
      sha256,
      contentType,
      onBytes: (n) => progress.bytes(n),
      timeoutSeconds: options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    });
    if (sent.status === 'rejected') {
      throw new UploadRejectedError(sent.uploadId, created.path, sent.reason ?? 'rejected');
    }
    progress.phase('done', undefined, { uploadId: sent.uploadId, version: sent.version ?? null });
    return {
      ...base,
      path: created.path,
      version: sent.version ?? null,
      status: 'committed',
      deduplicated: false,
      seconds: seconds(),
    };
  }

  progress.phase('uploading', size, { uploadId: created.uploadId });
  await deps.putFile({
    url: created.upload.url,
    headers: created.upload.headers,
    file: options.file,
    size,
    onBytes: (n) => progress.bytes(n),
  });

  if (options.wait === false) {
    progress.phase('done', undefined, { uploadId: created.uploadId, status: 'pending' });
    return {
      ...base,
      path: created.path,
      version: null,
      status: 'pending',
      deduplicated: false,
      seconds: seconds(),
    };
  }

  progress.phase('verifying', undefined, { uploadId: created.uploadId });
  const record = await waitForCommit(client, clock, {
    uploadId: created.uploadId,
    path: created.path,
    timeoutSeconds: options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
  });
  const version = record.version;
  if (version === undefined || version === null) {
    throw new MirrorCliError(`GET /v1/uploads/${created.uploadId}: committed without a version`);
  }
  progress.phase('done', undefined, { uploadId: created.uploadId, version });
  return {
    ...base,
    path: record.path,
    version,
    status: 'committed',
    deduplicated: false,
    seconds: seconds(),
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
    let record: Upload | undefined;
    try {
      record = await client.getUpload(options.uploadId);
    } catch (err) {
      const transient = err instanceof ApiError && err.transient;
      if (!transient || clock.now() >= deadline) throw err;
      lastStatus = `pending; last poll failed: ${(err as Error).message}`;
    }
    if (record !== undefined) {
      if (record.status === 'committed') return record;
      if (record.status === 'rejected' || record.status === 'expired') {
        throw new UploadRejectedError(options.uploadId, options.path, record.reason ?? 'no reason given');
      }
      lastStatus = record.status;
    }
    const remaining = deadline - clock.now();
    if (remaining <= 0) {
      throw new UploadTimeoutError(options.uploadId, options.path, options.timeoutSeconds, lastStatus);
    }
    await clock.sleep(Math.min(options.pollIntervalMs, remaining));
  }
}
