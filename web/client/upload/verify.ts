/** The last step: poll `GET /v1/uploads/{id}` while the ingest verifies the stored bytes. */
import type { Upload } from '../../../contracts/api.ts';
import type { MirrorApi } from '../api.ts';
import { ApiError } from '../errors.ts';
import { sleep } from '../retry.ts';

export interface VerifySettings {
  /** First wait between polls; it doubles up to `pollMaxMs`. */
  readonly pollFirstMs: number;
  /** Longest wait between polls. @default 2 s */
  readonly pollMaxMs?: number;
  /** Gives up after this long (the upload stays pending at the API). */
  readonly timeoutMs: number;
}

/**
 * The longest wait between polls for a file of `size` bytes: about 20 polls while the ingest
 * hashes it at 100 MB/s, between 2 and 30 s (a 50 GiB file: 27 s, some 30 polls instead of 300).
 */
export function pollCeilingMs(size: number): number {
  return Math.round(Math.min(30_000, Math.max(2_000, (size / 100e6 / 20) * 1000)));
}

/** Polls until the upload is no longer pending; its last state (committed, rejected or expired). */
export async function waitForVerdict(
  api: MirrorApi,
  uploadId: string,
  settings: VerifySettings,
  signal: AbortSignal,
): Promise<Upload> {
  let wait = settings.pollFirstMs;
  // Time passed, not the wall clock: stepped 2 hours ahead (NTP, a resumed VM), the wait ended
  // at the next poll and an upload about to commit was reported not verified.
  const deadline = performance.now() + settings.timeoutMs;
  for (;;) {
    const upload = await api.getUpload(uploadId, { signal });
    if (upload.status !== 'pending') return upload;
    if (performance.now() >= deadline) {
      throw new ApiError(
        `the upload was stored but not verified within ${Math.round(settings.timeoutMs / 1000)} s; ` +
          `GET /v1/uploads/${uploadId} tells how it ends`,
        'verify_timeout',
        0,
      );
    }
    await sleep(wait, signal);
    wait = Math.min(settings.pollMaxMs ?? 2000, wait * 2);
  }
}
