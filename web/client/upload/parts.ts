/**
 * The multipart steps: each part the store lacks is hashed (a second, bounded read of that
 * slice), presigned with its SHA-256, PUT and recorded with the ETag storage answered; several
 * at once, each retried with backoff. Then complete, sending again what it finds missing.
 */
import type { MultipartView, PresignedPart } from '../../../contracts/api.ts';
import type { PartPlan } from '../../../contracts/multipart.ts';
import type { MirrorApi } from '../api.ts';
import { ApiError, transientError } from '../errors.ts';
import {
  allParts,
  checkPlan,
  missingParts,
  PartProgress,
  type PartRange,
  ProgressMeter,
  type StoredPart,
  storedBytes,
  type UploadProgress,
} from '../plan.ts';
import { type RetryOptions, withRetries } from '../retry.ts';
import type { RangeHash } from './hash.ts';
import { type Putter, sendableHeaders, storageFailure } from './storage.ts';

export interface PartsContext {
  readonly api: MirrorApi;
  readonly uploadId: string;
  readonly file: Blob;
  readonly size: number;
  readonly putter: Putter;
  readonly hash: RangeHash;
  readonly concurrency: number;
  readonly retry: RetryOptions;
  readonly report: (progress: UploadProgress) => void;
}

export interface PartsSent {
  readonly parts: number;
  readonly skipped: number;
  readonly bytes: number;
}

interface Tally {
  parts: number;
  bytes: number;
}

/** The plan the API gave, checked against S3's limits before a byte is sent. */
function planOf(size: number, view: MultipartView): PartPlan {
  try {
    return checkPlan(size, view);
  } catch (error) {
    throw new ApiError((error as Error).message, 'bad_plan', 0, undefined, { cause: error });
  }
}

/** Sends the parts S3 does not hold, then completes; returns what was sent. */
export async function sendParts(ctx: PartsContext, view: MultipartView): Promise<PartsSent> {
  const { size } = ctx;
  const plan = planOf(size, view);
  const initial: readonly StoredPart[] = view.uploadedParts;
  const skipped = plan.partCount - missingParts(size, plan, initial).length;
  const meter = new ProgressMeter('uploading', size, undefined, undefined, storedBytes(size, plan, initial));
  ctx.report(meter.snapshot());
  const tally: Tally = { parts: 0, bytes: 0 };
  let todo = missingParts(size, plan, initial);
  // A complete that finds parts missing (`parts_missing`: a part not recorded) sends those again;
  // one that S3 refuses as recorded (`invalid_parts`: the part it holds is not the one recorded)
  // sends every part again. Then it tries again, twice at most.
  for (let round = 0; ; round++) {
    await sendAll(ctx, todo, meter, tally);
    const next = await complete(ctx, round);
    if (next === 'done') break;
    todo = next.resendAll ? allParts(size, plan) : missingParts(size, plan, next.stored);
  }
  return { parts: tally.parts, skipped, bytes: tally.bytes };
}

/** `todo`, `concurrency` at a time; the first part that fails for good fails them all. */
async function sendAll(ctx: PartsContext, todo: readonly PartRange[], meter: ProgressMeter, tally: Tally) {
  const progress = new PartProgress(ctx.size - todo.reduce((sum, p) => sum + p.size, 0));
  const queue = [...todo];
  const runner = async () => {
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      const n = part.partNumber;
      await sendPart(ctx, part, {
        sent: (bytes) => ctx.report(meter.set(progress.sent(n, bytes))),
        restart: () => progress.restart(n),
      });
      tally.parts++;
      tally.bytes += part.size;
      ctx.report(meter.set(progress.finished(n, part.size)));
    }
  };
  // The others are aborted by the caller.
  await Promise.all(Array.from({ length: Math.min(ctx.concurrency, todo.length) }, runner));
}

/** `POST .../complete`; what to send again when it finds parts missing or refused. */
async function complete(
  ctx: PartsContext,
  round: number,
): Promise<'done' | { stored: readonly StoredPart[]; resendAll: boolean }> {
  const { api, uploadId, retry } = ctx;
  try {
    await api.completeUpload(uploadId, { signal: retry.signal });
    return 'done';
  } catch (error) {
    if (error instanceof ApiError && error.status === 409 && error.code === 'upload_finished') return 'done';
    if (!(error instanceof ApiError && error.field === 'parts') || round >= 2) throw error;
    const upload = await api.getUpload(uploadId, { signal: retry.signal });
    if (upload.status !== 'pending') return 'done';
    const stored =
      upload.multipart && 'uploadedParts' in upload.multipart ? upload.multipart.uploadedParts : [];
    return { stored, resendAll: error.code === 'invalid_parts' };
  }
}

interface PartListener {
  sent(bytes: number): void;
  restart(): void;
}

/** One part: hash, presign, PUT (retried), record. */
async function sendPart(ctx: PartsContext, part: PartRange, progress: PartListener): Promise<void> {
  const sha256 = await ctx.hash(part.start, part.end);
  const body = ctx.file.slice(part.start, part.end);
  if (body.size !== part.size) {
    throw new ApiError(`the file is shorter than expected at part ${part.partNumber}`, 'file_changed', 0);
  }
  const etag = await putPart(ctx, part, sha256, body, progress);
  // Recorded parts are what complete assembles and what a resume skips.
  await ctx.api.recordPart(
    ctx.uploadId,
    part.partNumber,
    { size: part.size, sha256, etag },
    { signal: ctx.retry.signal },
  );
}

/** Presigns (again when the URL is about to expire, or once after a 403) and PUTs; the ETag. */
async function putPart(
  ctx: PartsContext,
  part: PartRange,
  sha256: string,
  body: Blob,
  progress: PartListener,
): Promise<string> {
  const { api, uploadId, putter, retry } = ctx;
  let signed: PresignedPart | undefined;
  let resigned = false;
  return withRetries(async () => {
    const expired = signed !== undefined && Date.parse(signed.expiresAt) - Date.now() < 30_000;
    if (signed === undefined || expired) {
      const request = { partNumber: part.partNumber, size: part.size, sha256 };
      signed = await api.presignPart(uploadId, request, { signal: retry.signal, retry: false });
    }
    progress.restart();
    const put = await putter(signed.url, sendableHeaders(signed.headers), body, retry.signal, progress.sent);
    if (put.status >= 200 && put.status < 300) return etagOrFail(part, put.etag, put.status);
    const failure = storageFailure(`uploading part ${part.partNumber}`, put);
    if (put.status === 403 && !resigned) {
      // An expired or refused signature: sign again once, then give up.
      resigned = true;
      signed = undefined;
      throw transientError(failure.message, put.status);
    }
    throw failure;
  }, retry);
}

function etagOrFail(part: PartRange, etag: string | undefined, status: number): string {
  if (etag) return etag;
  throw new ApiError(
    `storage stored part ${part.partNumber} but its ETag header cannot be read: ` +
      "the bucket's CORS rules must expose it (ExposeHeaders: ETag)",
    'etag_hidden',
    status,
  );
}
