/** The claim step (`POST /v1/uploads`) and the proof that lets known content skip its bytes. */
import type { CreateUploadResponse, UploadDeduplicated } from '../../../contracts/api.ts';
import { type MirrorApi, newIdempotencyKey } from '../api.ts';
import { ApiError, abortReason } from '../errors.ts';
import { type Challenge, proofDigest } from '../proof.ts';
import { unreadable } from './hash.ts';

export interface ClaimInput {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  readonly ifVersion?: number | undefined;
  /** Kept for every retry of this claim: one upload, one version. @default a random UUID */
  readonly idempotencyKey?: string | undefined;
}

export function claim(api: MirrorApi, input: ClaimInput, signal: AbortSignal): Promise<CreateUploadResponse> {
  const { idempotencyKey, ifVersion, ...declared } = input;
  return api.createUpload(
    { ...declared, ...(ifVersion === undefined ? {} : { ifVersion }) },
    { signal, idempotencyKey: idempotencyKey ?? newIdempotencyKey() },
  );
}

/**
 * Answers the claim's challenge. Resolves with the commit when the mirror holds the content;
 * undefined when it asks for the bytes (`proof_not_accepted`, the same answer whatever the
 * reason); throws other errors (a version conflict, the network giving out).
 */
export async function prove(
  api: Pick<MirrorApi, 'proveUpload'>,
  file: Blob,
  uploadId: string,
  challenge: Challenge,
  signal?: AbortSignal,
): Promise<UploadDeduplicated | undefined> {
  let digest: string;
  try {
    digest = await proofDigest(file, challenge);
  } catch (error) {
    if (signal?.aborted) throw abortReason(signal);
    throw unreadable(error);
  }
  try {
    return await api.proveUpload(uploadId, digest, { signal });
  } catch (error) {
    if (error instanceof ApiError && error.code === 'proof_not_accepted') return undefined;
    throw error;
  }
}
