/**
 * The multipart steps: each part the store lacks is hashed (a second, bounded read of that
 * slice) and presigned with its SHA-256, a batch of parts per call ahead of the PUTs
 * (part-batches.ts); PUT, several at once, each retried with backoff; and recorded with the
 * ETag storage answered, a batch at a time. Then complete, sending again what it finds missing.
 */
import type { MultipartView } from '../../../contracts/api.ts';
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
  reportEvery,
  type StoredPart,
  storedBytes,
  type UploadProgress,
} from '../plan.ts';
import { type RetryOptions, withRetries } from '../retry.ts';
import type { RangeHash } from './hash.ts';
import { batchSizes, PartRecorder, PartSigner } from './part-batches.ts';
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
  const stop = reportEvery(meter, ctx.report);
  try {
    // A complete that finds parts missing (`parts_missing`: a part not recorded) sends those again;
    // one that S3 refuses as recorded (`invalid_parts`: the part it holds is not the one recorded)
    // sends every part again. Then it tries again, twice at most.
    for (let round = 0; ; round++) {
      await sendAll(ctx, todo, meter, tally);
      const next = await complete(ctx, round);
      if (next === 'done') break;
      todo = next.resendAll ? allParts(size, plan) : missingParts(size, plan, next.stored);
    }
  } finally {
    stop();
  }
  return { parts: tally.parts, skipped, bytes: tally.bytes };
}

/** Presigning and recording, in batches, of one round of parts. */
interface Batches {
  readonly signer: PartSigner;
  readonly recorder: PartRecorder;
}

/** `todo`, `concurrency` at a time; the first part that fails for good fails them all. */
async function sendAll(ctx: PartsContext, todo: readonly PartRange[], meter: ProgressMeter, tally: Tally) {
  const progress = new PartProgress(ctx.size - todo.reduce((sum, p) => sum + p.size, 0));
  const queue = [...todo];
  const sizes = batchSizes(todo.length, ctx.concurrency);
  const { signal } = ctx.retry;
  const batches: Batches = {
    signer: new PartSigner({ ...ctx, signal }, todo, sizes),
    recorder: new PartRecorder(ctx.api, ctx.uploadId, signal, sizes.max),
  };
  const runner = async () => {
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      const n = part.partNumber;
      await sendPart(ctx, part, batches, {
        sent: (bytes) => ctx.report(meter.set(progress.sent(n, bytes))),
        restart: () => progress.restart(n),
      });
      tally.parts++;
      tally.bytes += part.size;
      ctx.report(meter.set(progress.finished(n, part.size)));
    }
  };
  // The others are aborted by the caller.
  try {
    await Promise.all(Array.from({ length: Math.min(ctx.concurrency, todo.length) }, runner));
  } catch (error) {
    // The parts storage already holds are recorded before giving up, so a retry (a Retry button,
    // a resume from another tab) sends only the others.
    await batches.recorder.flush().catch(() => undefined);
    throw error;
  }
  await batches.recorder.flush();
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

/** One part: PUT (retried) to the URL its batch was presigned with, then recorded with its batch. */
async function sendPart(
  ctx: PartsContext,
  part: PartRange,
  batches: Batches,
  progress: PartListener,
): Promise<void> {
  const body = ctx.file.slice(part.start, part.end);
  if (body.size !== part.size) {
    throw new ApiError(`the file is shorter than expected at part ${part.partNumber}`, 'file_changed', 0);
  }
  const { sha256, etag } = await putPart(ctx, part, batches.signer, body, progress);
  // Recorded parts are what complete assembles and what a resume skips.
  await batches.recorder.add({ partNumber: part.partNumber, size: part.size, sha256, etag });
}

/** PUTs with the part's URL (signed again once after a 403); its SHA-256 and the ETag. */
async function putPart(
  ctx: PartsContext,
  part: PartRange,
  signer: PartSigner,
  body: Blob,
  progress: PartListener,
): Promise<{ sha256: string; etag: string }> {
  const { putter, retry } = ctx;
  let renew = false;
  let resigned = false;
  return withRetries(async () => {
    const { signed, sha256 } = await signer.get(part, renew);
    renew = false;
    progress.restart();
    const put = await putter(signed.url, sendableHeaders(signed.headers), body, retry.signal, progress.sent);
    if (put.status >= 200 && put.status < 300) {
      signer.done(part.partNumber);
      return { sha256, etag: etagOrFail(part, put.etag, put.status) };
    }
    const failure = storageFailure(`uploading part ${part.partNumber}`, put);
    if (put.status === 403 && !resigned) {
      // An expired or refused signature: sign again once, then give up.
      resigned = true;
      renew = true;
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
