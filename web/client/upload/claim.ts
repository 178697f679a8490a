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

/**
 * Files from this size on are asked about before they are hashed. A smaller one hashes in about
 * 0.1 s or less (hash-wasm in a worker: 181 MB/s measured here; Node's SHA-256 several times
 * faster), about one round trip to the API on AWS: the check would cost what it could spare, and a
 * request more per small file counts against the API's throttle. 16 MiB is also the default
 * multipart threshold: a file this large makes a dozen requests or more, one more is little.
 */
export const PATH_CHECK_FROM_BYTES = 16 * 1024 * 1024;

/**
 * Before the file is hashed (minutes for a large one): what the claim would answer for its path
 * alone (`GET /v1/paths`), asked once. Throws the claim's refusal (400, field `path`), and a 401:
 * the claim carries the same credentials and would be refused too, after the hash. Anything else
 * leaves the path to the claim, as before this route: an API without it (404 `no_route`), a scope
 * that may not read (403: IAM can allow the claim's route and not this one), an error or no answer. Not retried: the claim is the authority,
 * and a retried check would hold the file up for no more than a hint.
 */
export async function refusePathBeforeHashing(
  api: Pick<MirrorApi, 'checkPath'>,
  path: string,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await api.checkPath(path, { signal, retry: false });
  } catch (error) {
    if (signal?.aborted) throw abortReason(signal);
    if (
      error instanceof ApiError &&
      (error.status === 401 || (error.status === 400 && error.field === 'path'))
    ) {
      throw error;
    }
  }
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
