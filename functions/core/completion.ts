/**
 * Completing a multipart upload in the background: `POST /v1/uploads/{id}/complete` checks the
 * recorded parts and puts a completion message on the completion queue; the complete-multipart
 * function then runs S3's CompleteMultipartUpload, which for thousands of parts can outlast the API
 * function's 29 s. Both halves are idempotent: a client's retried complete sends another message, and a
 * message that finds the upload completed already (by S3, whose event the ingest verifies) converges on it.
 */
import * as z from 'zod';
import { canonicalEtag, uploadIdSchema } from '../../contracts/api.js';
import type { Upload } from '../../contracts/model.js';
import type { BlobStore, Clock, Metrics, UploadLedger } from './ports.js';

/** The message the complete-multipart function takes from its queue. */
export const completionMessageSchema = z.strictObject({
  completeUpload: z.strictObject({ uploadId: uploadIdSchema }),
});
export type CompletionMessage = z.infer<typeof completionMessageSchema>;

/** Where the API sends completions: the completion queue. */
export interface CompletionQueue {
  requestCompletion(uploadId: string): Promise<void>;
}

export interface CompletionDeps {
  readonly ledger: Pick<UploadLedger, 'getUpload' | 'listParts' | 'finishUpload' | 'removePendingUpload'>;
  readonly blobs: Pick<BlobStore, 'completeMultipart' | 'abortMultipart' | 'stat'>;
  readonly clock: Clock;
  readonly metrics?: Metrics | undefined;
}

export type CompletionOutcome =
  /** S3 assembled the object: its event reaches the ingest, which verifies and commits. */
  | { readonly kind: 'completed' }
  /** Done before (a retried complete, a redelivered message): nothing to do. */
  | { readonly kind: 'already'; readonly status: Upload['status'] | 'stored' }
  /** Storage refused the parts as recorded, or no longer holds them: the upload is rejected. */
  | { readonly kind: 'rejected'; readonly reason: string };

const REFUSED_PARTS = new Set(['InvalidPart', 'InvalidPartOrder', 'BadDigest', 'EntityTooSmall']);

/** Runs S3's CompleteMultipartUpload for an upload whose complete was requested. */
export async function completeRecordedUpload(
  deps: CompletionDeps,
  uploadId: string,
): Promise<CompletionOutcome> {
  const upload = await deps.ledger.getUpload(uploadId);
  if (!upload?.multipart || upload.status !== 'pending') {
    return { kind: 'already', status: upload?.status ?? 'rejected' };
  }
  const stored = await deps.ledger.listParts(uploadId);
  const parts = stored
    .filter((p) => p.partNumber <= (upload.multipart?.partCount ?? 0))
    .sort((a, b) => a.partNumber - b.partNumber)
    .map((p) => ({ ...p, etag: canonicalEtag(p.etag) }));
  try {
    await deps.blobs.completeMultipart(upload.sha256, upload.multipart.multipartId, parts);
    return { kind: 'completed' };
  } catch (error) {
    const name = (error as { name?: string }).name ?? '';
    if (name === 'NoSuchUpload') return afterNoSuchUpload(deps, upload);
    if (REFUSED_PARTS.has(name)) {
      return reject(deps, upload, `invalid_parts: storage refused the parts as recorded (${name})`, true);
    }
    throw error;
  }
}

/**
 * S3 no longer knows the multipart upload: either it completed it already (an earlier message,
 * whose object names this upload), or it discarded the parts (expired).
 */
async function afterNoSuchUpload(deps: CompletionDeps, upload: Upload): Promise<CompletionOutcome> {
  const object = await deps.blobs.stat(upload.sha256);
  if (object?.uploadId === upload.uploadId) return { kind: 'already', status: 'stored' };
  return reject(deps, upload, 'upload_expired: storage no longer holds the parts; start a new upload', false);
}

async function reject(
  deps: CompletionDeps,
  upload: Upload,
  reason: string,
  abort: boolean,
): Promise<CompletionOutcome> {
  if (abort && upload.multipart) {
    // Best effort: the bucket's lifecycle rule aborts incomplete multipart uploads after a day anyway.
    await deps.blobs.abortMultipart(upload.sha256, upload.multipart.multipartId).catch(() => undefined);
  }
  await deps.ledger.finishUpload(
    upload.uploadId,
    { status: 'rejected', reason },
    deps.clock.now().toISOString(),
  );
  await deps.ledger.removePendingUpload(upload.sha256, upload.uploadId);
  deps.metrics?.count('MultipartCompletionRejected');
  return { kind: 'rejected', reason };
}
