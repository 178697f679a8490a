/**
 * Proof of possession for deduplication (docs/api.md, "Deduplication: proving you hold the
 * bytes"). Knowing a SHA-256 is not holding the bytes: a hash can leak from a log, a listing
 * or a change feed. Every claim is answered with a challenge (a nonce and byte ranges of the
 * DECLARED size), whether or not the mirror holds the content, so the answer reveals nothing.
 * A client that holds the bytes answers with SHA-256(nonce ‖ range bytes…); the server checks
 * that against ranged reads of the stored, verified blob and commits without any byte sent.
 * Every failure, including "no such content", is the same refusal, and a challenge can be
 * answered once, so nothing can be probed.
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { UploadDeduplicated } from '../../contracts/api.js';
import type { Challenge, FileVersion, Upload } from '../../contracts/model.js';
import {
  type CommitDeps,
  commitVersion,
  endUploadAtHead,
  folderRuleFor,
  keepsEqualHeadOf,
} from './commit.js';
import { MirrorError, UploadFinishedError, ValidationError, VersionConflictError } from './errors.js';
import type { BlobLedger, BlobStore, Metrics, UploadLedger, VersionLedger } from './ports.js';

/** Bytes of each challenged range. */
export const PROOF_RANGE_BYTES = 64 * 1024;
/** Ranges per challenge. */
export const PROOF_RANGE_COUNT = 4;
/** Files up to this size are challenged whole: one range, every byte. */
export const PROOF_WHOLE_FILE_BYTES = PROOF_RANGE_BYTES * PROOF_RANGE_COUNT;
export const NONCE_BYTES = 32;

export interface ChallengeRandom {
  /** `n` random bytes. */
  bytes(n: number): Uint8Array;
  /** A random integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
}

const cryptoRandom: ChallengeRandom = {
  bytes: (n) => randomBytes(n),
  int: (max) => randomInt(max),
};

/**
 * A fresh challenge for a claim of `size` bytes: the ranges depend on the declared size only,
 * never on what the mirror holds.
 */
export function issueChallenge(
  size: number,
  expiresAt: Date,
  random: ChallengeRandom = cryptoRandom,
): Challenge {
  const nonce = Buffer.from(random.bytes(NONCE_BYTES)).toString('base64');
  let ranges: { offset: number; length: number }[];
  if (size === 0) ranges = [];
  else if (size <= PROOF_WHOLE_FILE_BYTES) ranges = [{ offset: 0, length: size }];
  else {
    // randomInt takes at most 2^48 - 1: far above the largest upload (50 GiB).
    ranges = Array.from({ length: PROOF_RANGE_COUNT }, () => ({
      offset: random.int(size - PROOF_RANGE_BYTES + 1),
      length: PROOF_RANGE_BYTES,
    }));
  }
  return { nonce, ranges, expiresAt: expiresAt.toISOString() };
}

/** SHA-256 (hex) over the nonce's bytes, then each range's bytes in the challenge's order. */
export function proofDigest(nonceBase64: string, rangeBytes: Iterable<Uint8Array>): string {
  const hash = createHash('sha256').update(Buffer.from(nonceBase64, 'base64'));
  for (const bytes of rangeBytes) hash.update(bytes);
  return hash.digest('hex');
}

/**
 * The one answer to every proof that does not commit: wrong digest, content the mirror does
 * not hold (or holds at another size), expired or already answered challenge. Same status,
 * code, field and message for all, so the answer tells nothing about stored content.
 */
export class ProofNotAcceptedError extends MirrorError {
  constructor() {
    super('upload the bytes', { code: 'proof_not_accepted', status: 422, field: 'digest' });
  }
}

export interface PossessionDeps extends CommitDeps {
  readonly ledger: UploadLedger & BlobLedger & VersionLedger;
  readonly blobs: BlobStore;
  readonly metrics?: Metrics | undefined;
}

/**
 * Checks a proof for a pending upload and, when it holds, commits the upload's version as
 * deduplicated. The challenge is spent first (a conditional write), so a second attempt, or
 * two at once, can never both be weighed.
 */
export async function proveUpload(
  deps: PossessionDeps,
  upload: Upload,
  digest: string,
): Promise<UploadDeduplicated> {
  const { ledger, clock } = deps;
  const challenge = upload.challenge;
  if (!challenge) throw new ProofNotAcceptedError();
  const spent = await ledger.spendChallenge(upload.uploadId, challenge.nonce);
  if (!spent || Date.parse(challenge.expiresAt) <= clock.now().getTime()) {
    deps.metrics?.count('ProofsRefused');
    throw new ProofNotAcceptedError();
  }
  const blob = await ledger.getBlob(upload.sha256);
  let held = false;
  if (blob && blob.size === upload.size) {
    const chunks = await Promise.all(
      challenge.ranges.map((r) => deps.blobs.readRange(upload.sha256, r.offset, r.length, blob.versionId)),
    );
    deps.metrics?.count('ProofRangeReads', challenge.ranges.length);
    // The ledger says verified but storage lost the bytes: the caller's own bytes restore them.
    const read = chunks.filter((c): c is Uint8Array => c !== undefined);
    held = read.length === chunks.length && digestsEqual(proofDigest(challenge.nonce, read), digest);
  }
  if (!held) {
    deps.metrics?.count('ProofsRefused');
    throw new ProofNotAcceptedError();
  }

  const version = await commitProven(deps, upload);
  const multipart = upload.multipart;
  // Nothing will be sent to it; the bucket's lifecycle rule would abort it after a day anyway.
  if (multipart) {
    await deps.blobs.abortMultipart(upload.sha256, multipart.multipartId).catch(() => {
      deps.metrics?.count('MultipartAbortFailed');
    });
  }
  deps.metrics?.count('ProofsAccepted');
  return {
    status: 'committed',
    uploadId: upload.uploadId,
    path: upload.path,
    version: version.version,
    deduplicated: true,
  };
}

/** Commits a proven upload's version (deduplicated); a twin's equal head ends it there instead. */
async function commitProven(deps: PossessionDeps, upload: Upload): Promise<FileVersion> {
  const { ledger, clock } = deps;
  let version: FileVersion;
  // The ingest may commit this same upload if its bytes arrive meanwhile: only a pending upload
  // commits (core/commit.ts), so both end in one version.
  try {
    // Admitted at claim time; another path may have taken its folder or file since.
    const folderRule = await folderRuleFor(deps, upload.path);
    version = await commitVersion(deps, {
      folderRule,
      uploadId: upload.uploadId,
      path: upload.path,
      sha256: upload.sha256,
      size: upload.size,
      contentType: upload.contentType,
      deleted: false,
      ifVersion: upload.ifVersion,
      keepsEqualHead: keepsEqualHeadOf(upload),
      endsUpload: { deduplicated: true },
    });
  } catch (error) {
    // As the ingest does, reason and all: clients tell a lost ifVersion race from a failed
    // verification by the reason's code (web/client's verdict).
    if (error instanceof VersionConflictError || error instanceof ValidationError) {
      await ledger.finishUpload(
        upload.uploadId,
        { status: 'rejected', reason: `${error.code}: ${error.message}` },
        clock.now().toISOString(),
      );
      await ledger.removePendingUpload(upload.sha256, upload.uploadId);
    }
    throw error;
  }
  // A twin upload committed these very bytes to this path after this one was claimed: it ends at
  // that version (no second identical one), unless it ended otherwise meanwhile.
  const endedOtherwise =
    version.uploadId === upload.uploadId ? undefined : await endUploadAtHead(deps, upload, version, true);
  if (endedOtherwise !== undefined) throw new UploadFinishedError(upload.uploadId, endedOtherwise);
  return version;
}

function digestsEqual(expectedHex: string, givenHex: string): boolean {
  const a = Buffer.from(expectedHex, 'hex');
  const b = Buffer.from(givenHex.toLowerCase(), 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
