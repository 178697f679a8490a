/**
 * Large files: the API answered the claim with a multipart plan. The client module
 * (web/client) already implements parts, per-part SHA-256, retries, resume and completion
 * over fetch; Node has fetch and file-backed Blobs, so the CLI uses the same code rather
 * than a second implementation, and continues the upload it claimed (no second claim).
 */
import { openAsBlob } from 'node:fs';
import type { UploadPendingMultipart } from '../contracts/api.ts';
import type { FetchLike, MirrorApi } from '../web/client/api.ts';
import { checkPlan, storedBytes } from '../web/client/plan.ts';
import { continueUpload } from '../web/client/upload-file.ts';

export interface PartUploadRequest {
  file: string;
  /** The claim's answer: the upload to send the parts of. */
  claimed: UploadPendingMultipart;
  sha256: string;
  contentType: string;
  /**
   * Bytes this call has sent so far, as a running total: the parts storage held before it (a
   * resumed upload) are not sent, so not counted.
   */
  onBytes: (bytesSent: number) => void;
  timeoutSeconds: number;
}

export interface PartUploadResult {
  status: 'committed' | 'rejected';
  uploadId: string;
  version?: number | undefined;
  reason?: string | undefined;
  resumed: boolean;
}

export type SendParts = (request: PartUploadRequest) => Promise<PartUploadResult>;

/** Parts go through `client` (the CLI's one API client); their PUTs to storage through `fetch`. */
export function createPartSender(client: MirrorApi, fetch?: FetchLike): SendParts {
  return async (request) => {
    const blob = await openAsBlob(request.file);
    // The client's progress counts the stored parts as done from its first report on.
    const stored = alreadyStored(request.claimed, blob.size);
    const result = await continueUpload(blob, request.claimed, {
      client,
      ...(fetch === undefined ? {} : { fetch: fetch as typeof globalThis.fetch }),
      path: request.claimed.path,
      contentType: request.contentType,
      sha256: request.sha256,
      // No Web Worker in Node: parts are hashed on this thread, one at a time as they are sent.
      workerUrl: null,
      verifyTimeoutMs: request.timeoutSeconds * 1000,
      onProgress: (p) => {
        if (p.phase === 'uploading') request.onBytes(Math.max(0, p.bytesDone - stored));
      },
    });
    // The client's own tally: parts sent again after a complete refused them (missing, or not as
    // recorded) go out once its progress has reached the whole file, and only the tally counts them.
    request.onBytes(result.bytesSent);
    return {
      status: result.status,
      uploadId: result.uploadId,
      version: result.version,
      reason: result.reason,
      resumed: result.resumed,
    };
  };
}

/**
 * Bytes of a claimed multipart upload that storage already holds (a resumed upload): the parts
 * of the plan recorded with the right size, which the client will not send again.
 */
export function alreadyStored(claimed: UploadPendingMultipart, size: number): number {
  try {
    return storedBytes(size, checkPlan(size, claimed.multipart), claimed.multipart.uploadedParts);
  } catch {
    // A plan the client refuses fails the send, with the client's words: nothing is sent.
    return 0;
  }
}
