/**
 * What the upload API does, independent of HTTP: accept an upload claim (answered with
 * where to send the bytes and a proof-of-possession challenge, see possession.ts),
 * report state, delete.
 */
import { randomUUID } from 'node:crypto';
import {
  AUTOMATIC_HEADERS,
  type CreateUploadResponse,
  canonicalEtag,
  type MultipartView,
  type PartReport,
  type PartRequest,
  type PresignedPart,
  type PresignedPut,
  type ResponseBody,
  type UploadDeduplicated,
  type UploadRequest,
} from '../../contracts/api.js';
import { claimLimitRefusal } from '../../contracts/claim-limits.js';
import type { Challenge, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import { type CommitDeps, commitVersion } from './commit.js';
import type { CompletionQueue } from './completion.js';
import {
  MirrorError,
  NotFoundError,
  UploadFinishedError,
  ValidationError,
  VersionConflictError,
} from './errors.js';
import {
  expiresAtFor,
  isLapsed,
  SLOWEST_PUT_BYTES_PER_SECOND,
  settleIfLapsed,
  uploadExpiresAt,
} from './expiry.js';
import { findOwnCommit, keyedRequestId, unchangedHead } from './idempotency.js';
import { missingParts, partBytes, planParts } from './multipart.js';
import type { BlobStore, Ledger, Metrics, PendingClaim, ReplicaStore, StoredPart } from './ports.js';
import { issueChallenge, proveUpload } from './possession.js';
import { contentStored } from './restore.js';

export interface UploadDeps extends CommitDeps {
  /** The API reads and writes every aggregate. */
  readonly ledger: Ledger;
  readonly blobs: BlobStore;
  readonly metrics?: Metrics;
  readonly replicas: (targetId: string) => ReplicaStore | undefined;
  /**
   * Where completions of multipart uploads go to run in the background (the ingest queue);
   * without it the API completes them itself, which for thousands of parts may outlast its 29 s.
   */
  readonly completionQueue?: CompletionQueue | undefined;
  readonly limits: {
    readonly maxUploadBytes: number;
    /** Above this size an upload goes in parts. */
    readonly multipartThresholdBytes: number;
    readonly contentTypes: readonly string[];
    readonly presignTtlSeconds: number;
  };
}

/**
 * Storage's signed headers as the contract states them: those the uploader must send, and those
 * every HTTP client sets itself (`content-length` from the body, `host` from the URL), which
 * browsers refuse to set.
 */
function splitSignedHeaders<H extends PresignedPut['headers'] | PresignedPart['headers']>(
  url: string,
  size: number,
  signed: Readonly<Record<string, string>>,
): { headers: H; automaticHeaders: PresignedPut['automaticHeaders'] } {
  const automatic: readonly string[] = AUTOMATIC_HEADERS;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed)) {
    if (!automatic.includes(name.toLowerCase())) headers[name.toLowerCase()] = value;
  }
  return {
    headers: headers as H,
    automaticHeaders: { 'content-length': String(size), host: new URL(url).host },
  };
}

/** Whether a claim reads the path's head (createUpload): to check ifVersion, or to find it unchanged. */
export const claimReadsHead = (request: Pick<UploadRequest, 'ifVersion' | 'newVersion'>): boolean =>
  request.ifVersion !== undefined || request.newVersion !== true;

export async function createUpload(
  deps: UploadDeps,
  request: UploadRequest,
  /**
   * The path's head, read already (the API reads it alongside the claim's other checks: issue 10);
   * otherwise read here. Read once either way.
   */
  headRead?: Promise<FileVersion | undefined>,
): Promise<CreateUploadResponse> {
  const { clock, limits } = deps;
  // The page and the Uppy plugin hold a file to the same rule before they hash it.
  const refusal = claimLimitRefusal(request, limits);
  if (refusal !== undefined) {
    throw new ValidationError(refusal.field, refusal.message, { code: refusal.code, status: refusal.status });
  }
  let read = headRead;
  const getHead = (path: string) => {
    read ??= deps.ledger.getHead(path);
    return read;
  };
  if (request.ifVersion !== undefined) {
    const current = (await getHead(request.path))?.version ?? 0;
    if (current !== request.ifVersion)
      throw new VersionConflictError(request.path, request.ifVersion, current);
  }
  const head = await unchangedHead({ getHead }, request);
  // A head whose bytes storage lost is no answer: the claim goes on and asks for them (probe V4).
  if (head && (await contentStored(deps, request.sha256)))
    return { status: 'committed', path: request.path, ...head, unchanged: true };

  const now = clock.now();
  const uploadId = randomUUID();
  const expiresAt = new Date(now.getTime() + limits.presignTtlSeconds * 1000);
  // Known content or not, every claim gets the same answer: where to send the bytes, and a
  // challenge that lets a holder of the bytes skip sending them (possession.ts).
  const challenge = issueChallenge(request.size, expiresAt);
  if (request.size > limits.multipartThresholdBytes)
    return createMultipartUpload(deps, request, uploadId, now, challenge);

  const upload: Upload = {
    ...request,
    uploadId,
    status: 'pending',
    challenge,
    expiresAt: expiresAtFor('put', now, request.size, limits.presignTtlSeconds),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
  // With its pointer, at once: the ingest never finds a pointer to nothing, and no crash leaves an
  // upload no sweep finds. The pointer carries the claim: the ingest commits from it without
  // reading the upload.
  await deps.ledger.openUpload(upload);
  const signed = await deps.blobs.presignPut({
    sha256: request.sha256,
    size: request.size,
    contentType: request.contentType,
    expiresInSeconds: limits.presignTtlSeconds,
    uploadId,
  });
  return {
    status: 'pending',
    uploadId,
    path: request.path,
    upload: {
      method: 'PUT',
      url: signed.url,
      ...splitSignedHeaders<PresignedPut['headers']>(signed.url, request.size, signed.headers),
      expiresAt: expiresAt.toISOString(),
    },
    challenge,
  };
}

/**
 * `POST /v1/uploads/{id}/proof`: commits a pending upload without its bytes when the digest
 * proves the caller holds them; otherwise the one refusal (`proof_not_accepted`) and the
 * upload stays pending for its bytes.
 *
 * A proof for an upload a proof already committed is a retry whose answer was lost (the api
 * died after the commit, a timeout): it gets that answer again, the committed version, and
 * nothing more happens. It reveals nothing `GET /v1/uploads/{id}` does not.
 */
export async function proveUploadById(
  deps: UploadDeps,
  uploadId: string,
  digest: string,
): Promise<UploadDeduplicated> {
  const upload = await settleIfLapsed(deps, await getUpload(deps, uploadId));
  if (upload.status === 'committed' && upload.deduplicated === true && upload.version !== undefined) {
    deps.metrics?.count('ProofRetriesAnswered');
    return {
      status: 'committed',
      uploadId,
      path: upload.path,
      version: upload.version,
      deduplicated: true,
    };
  }
  if (upload.status !== 'pending') {
    throw new UploadFinishedError(uploadId, upload.status);
  }
  return proveUpload(deps, upload, digest);
}

/**
 * A claim (a pointer's, or the upload's own) on the terms of `request`: same file, same conditions
 * (`newVersion` too: a claim that asks for a new version of equal content must not ride on one
 * that does not, nor the other way round).
 */
const sameTerms = (
  claim: Pick<PendingClaim, 'path' | 'size' | 'contentType' | 'ifVersion' | 'newVersion'>,
  request: UploadRequest,
): boolean =>
  claim.path === request.path &&
  claim.size === request.size &&
  claim.contentType === request.contentType &&
  claim.ifVersion === request.ifVersion &&
  (claim.newVersion === true) === (request.newVersion === true);

async function createMultipartUpload(
  deps: UploadDeps,
  request: UploadRequest,
  uploadId: string,
  now: Date,
  challenge: Challenge,
): Promise<CreateUploadResponse> {
  const { ledger, blobs } = deps;
  // Resumable: the same file to the same path, on the same terms (content type, ifVersion, newVersion), continues
  // the upload already under way, from any browser, within RESUMABLE_FOR_MS (after that storage may
  // have aborted it: a new upload starts). Other terms start an upload of their own: the commit
  // would carry the first claim's.
  // The pointers carry their claims: only those on the same terms are read (anyone may claim a
  // hash at other paths, at no cost to them, and a read per pointer would slow every claim of it).
  const pointers = await ledger.listPendingClaims(request.sha256);
  for (const { uploadId: pendingId } of pointers.filter(
    ({ claim }) => claim === undefined || sameTerms(claim, request),
  )) {
    const found = await ledger.getUpload(pendingId);
    const pending = found && (await settleIfLapsed(deps, found));
    if (
      pending?.status === 'pending' &&
      pending.multipart &&
      sameTerms(pending, request) &&
      !isLapsed(pending, now)
    ) {
      // The challenge already given out while it can still be answered: a new one would refuse the
      // proof another client of this upload is computing for it.
      const given = pending.challenge;
      const answerable =
        given !== undefined &&
        pending.challengeSpent !== given.nonce &&
        Date.parse(given.expiresAt) > now.getTime();
      if (!answerable) await ledger.setChallenge(pendingId, challenge);
      return {
        status: 'pending',
        uploadId: pendingId,
        path: request.path,
        resumed: true,
        multipart: await multipartView(deps, pending),
        challenge: answerable ? given : challenge,
      };
    }
  }
  const plan = planParts(request.size);
  const multipartId = await blobs.createMultipart(request.sha256, request.contentType, uploadId);
  const upload: Upload = {
    ...request,
    uploadId,
    status: 'pending',
    multipart: { multipartId, ...plan },
    challenge,
    expiresAt: expiresAtFor('multipart', now, request.size, deps.limits.presignTtlSeconds),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
  await ledger.openUpload(upload);
  return {
    status: 'pending',
    uploadId,
    path: request.path,
    resumed: false,
    multipart: { ...plan, uploadedParts: [] },
    challenge,
  };
}

/**
 * A claim's answer replayed for a retry under the same Idempotency-Key (a Retry button), brought
 * up to date while its upload is pending:
 * - multipart: the parts recorded since the first answer are listed, so the retry sends only the
 *   missing ones instead of every part again;
 * - a single PUT whose URL has expired: a URL is signed again for what is left of the upload's
 *   window (its URL expires minutes before the upload does: a Retry in between got 403 every
 *   time). Once too little is left, the answer stays as it was, and the client claims anew when
 *   it finds the upload expired.
 */
export async function refreshReplayedClaim(
  deps: Pick<UploadDeps, 'ledger' | 'blobs' | 'clock' | 'limits'>,
  answer: CreateUploadResponse,
): Promise<CreateUploadResponse> {
  if (answer.status !== 'pending') return answer;
  const upload = await deps.ledger.getUpload(answer.uploadId);
  if (upload?.status !== 'pending') return answer;
  if ('multipart' in answer) {
    return upload.multipart ? { ...answer, multipart: await multipartView(deps, upload) } : answer;
  }
  const now = deps.clock.now().getTime();
  // At least a minute (half the TTL, when that is shorter) for the client to start its PUT.
  const minLifeMs = Math.min(60_000, deps.limits.presignTtlSeconds * 500);
  if (Date.parse(answer.upload.expiresAt) > now + minLifeMs) return answer;
  // The bytes must land before the upload's window closes, at the slowest rate it allows for.
  const transferMs = Math.ceil((upload.size / SLOWEST_PUT_BYTES_PER_SECOND) * 1000);
  const leftMs = Math.min(
    deps.limits.presignTtlSeconds * 1000,
    uploadExpiresAt(upload).getTime() - now - transferMs,
  );
  if (leftMs < minLifeMs) return answer;
  const expiresInSeconds = Math.floor(leftMs / 1000);
  const signed = await deps.blobs.presignPut({
    sha256: upload.sha256,
    size: upload.size,
    contentType: upload.contentType,
    expiresInSeconds,
    uploadId: upload.uploadId,
  });
  return {
    ...answer,
    upload: {
      method: 'PUT',
      url: signed.url,
      ...splitSignedHeaders<PresignedPut['headers']>(signed.url, upload.size, signed.headers),
      expiresAt: new Date(now + expiresInSeconds * 1000).toISOString(),
    },
  };
}

async function multipartView(deps: Pick<UploadDeps, 'ledger'>, upload: Upload): Promise<MultipartView> {
  if (!upload.multipart) throw new Error(`upload ${upload.uploadId} is not multipart`);
  const { partSize, partCount } = upload.multipart;
  const stored = await deps.ledger.listParts(upload.uploadId);
  return {
    partSize,
    partCount,
    // Parts recorded before ETags were kept in one form may lack the quotes.
    uploadedParts: stored.map(({ partNumber, size, etag }) => ({
      partNumber,
      size,
      etag: canonicalEtag(etag),
    })),
  };
}

async function pendingMultipart(deps: UploadDeps, uploadId: string) {
  const upload = await settleIfLapsed(deps, await getUpload(deps, uploadId));
  if (upload.status === 'expired' || (upload.status === 'pending' && isLapsed(upload, deps.clock.now()))) {
    throw new MirrorError(
      `upload "${uploadId}" expired at ${upload.expiresAt ?? 'its resumable window'}; start a new upload`,
      { code: 'upload_expired', status: 409, field: 'uploadId' },
    );
  }
  if (upload.status !== 'pending') {
    throw new UploadFinishedError(uploadId, upload.status);
  }
  if (!upload.multipart) {
    throw new ValidationError('uploadId', `upload "${uploadId}" is a single PUT, not a multipart upload`, {
      code: 'not_multipart',
    });
  }
  return { ...upload, multipart: upload.multipart };
}

/** Part `n`'s planned size, or a 400 naming `field` (`size`, or `parts.3.size` in a list). */
function checkPartSize(
  upload: Upload & { multipart: NonNullable<Upload['multipart']> },
  part: { readonly partNumber: number; readonly size: number },
  fieldPrefix = '',
): void {
  let expected: number;
  try {
    expected = partBytes(upload.multipart, upload.size, part.partNumber);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    throw new ValidationError(`${fieldPrefix}partNumber`, error.message);
  }
  if (part.size !== expected)
    throw new ValidationError(`${fieldPrefix}size`, `part ${part.partNumber} must be ${expected} bytes`);
}

/** Presigns one part's PUT with that part's SHA-256 and exact length signed in. */
export async function presignPart(
  deps: UploadDeps,
  uploadId: string,
  part: PartRequest,
): Promise<PresignedPart> {
  const [signed] = await presignParts(deps, uploadId, [part], () => '');
  return signed as PresignedPart;
}

/**
 * Presigns many parts' PUTs in one request (`POST /v1/uploads/{id}/parts`), each with its own
 * SHA-256 and exact length signed in; every part is checked before any is signed.
 */
export async function presignParts(
  deps: UploadDeps,
  uploadId: string,
  parts: readonly PartRequest[],
  fieldPrefix: (index: number) => string = (i) => `parts.${i}.`,
): Promise<PresignedPart[]> {
  const upload = await pendingMultipart(deps, uploadId);
  parts.forEach((part, i) => {
    checkPartSize(upload, part, fieldPrefix(i));
  });
  // A part URL never outlives the upload's resumable window.
  const now = deps.clock.now().getTime();
  const ttlSeconds = Math.max(
    1,
    Math.min(deps.limits.presignTtlSeconds, Math.floor((uploadExpiresAt(upload).getTime() - now) / 1000)),
  );
  const expiresAt = new Date(now + ttlSeconds * 1000).toISOString();
  // Signing is local computation (no request to storage): a thousand parts take well under a second.
  return Promise.all(
    parts.map(async (part) => {
      const signed = await deps.blobs.presignPart({
        sha256: upload.sha256,
        multipartId: upload.multipart.multipartId,
        partNumber: part.partNumber,
        size: part.size,
        partSha256: part.sha256,
        expiresInSeconds: ttlSeconds,
      });
      return {
        partNumber: part.partNumber,
        url: signed.url,
        ...splitSignedHeaders<PresignedPart['headers']>(signed.url, part.size, signed.headers),
        expiresAt,
      };
    }),
  );
}

/**
 * `POST /v1/uploads/{id}/complete`: checks that every part is recorded with its planned size,
 * then completes in the background (`completionQueue`: the answer is `verifying`, poll the
 * upload) or here. Idempotent: a retry while the upload is pending answers `verifying` again, one
 * after its commit answers the committed upload, and a retry that finds S3 completed already
 * (an earlier attempt that timed out) converges on it; none is a 409.
 */
export async function completeUpload(
  deps: UploadDeps,
  uploadId: string,
): Promise<ResponseBody<'completeUpload', 202> | ResponseBody<'completeUpload', 200>> {
  const found = await settleIfLapsed(deps, await getUpload(deps, uploadId));
  if (found.status === 'committed' && found.multipart) return describeUpload(deps, uploadId);
  const upload = await pendingMultipart(deps, uploadId);
  const stored = await deps.ledger.listParts(uploadId);
  const missing = missingParts(upload.multipart, upload.size, stored);
  if (missing.length > 0) {
    const shown = missing.slice(0, 20).join(', ');
    throw new ValidationError(
      'parts',
      `parts missing or of the wrong size: ${shown}${missing.length > 20 ? ', …' : ''}`,
      { code: 'parts_missing' },
    );
  }
  if (deps.completionQueue) {
    // Recorded before the message goes: a message lost (or never sent) is sent again by the
    // lost-notification sweep (core/pending-sweep.ts), which looks for this mark.
    await deps.ledger.markCompletionRequested(uploadId, deps.clock.now().toISOString());
    await deps.completionQueue.requestCompletion(uploadId);
  } else await completeHere(deps, upload, stored);
  return { status: 'verifying', uploadId };
}

/** CompleteMultipartUpload within the request (no completion queue). */
async function completeHere(
  deps: UploadDeps,
  upload: Upload & { multipart: NonNullable<Upload['multipart']> },
  stored: readonly StoredPart[],
): Promise<void> {
  try {
    const parts = stored.map((p) => ({ ...p, etag: canonicalEtag(p.etag) }));
    await deps.blobs.completeMultipart(upload.sha256, upload.multipart.multipartId, parts);
  } catch (error) {
    // S3 checks every reported ETag and checksum: a part that is not what was reported fails here.
    const name = (error as { name?: string }).name;
    if (name === 'NoSuchUpload') {
      // Completed by an earlier attempt (whose answer the client never got): the same result.
      if ((await deps.blobs.stat(upload.sha256))?.uploadId === upload.uploadId) return;
      throw new MirrorError(`upload "${upload.uploadId}" expired at storage; start a new upload`, {
        code: 'upload_expired',
        status: 409,
        field: 'uploadId',
        cause: error,
      });
    }
    if (name === 'InvalidPart' || name === 'InvalidPartOrder' || name === 'BadDigest') {
      throw new ValidationError(
        'parts',
        `storage refused the parts as reported: ${(error as Error).message}`,
        {
          code: 'invalid_parts',
          cause: error,
        },
      );
    }
    throw error;
  }
}

/** The uploader reports a part stored, with the ETag storage answered; this is what lets another browser resume. */
export async function recordPart(
  deps: UploadDeps,
  uploadId: string,
  part: PartReport & { readonly partNumber: number },
): Promise<MultipartView> {
  return recordParts(deps, uploadId, [part], () => '');
}

/** Ledger writes of one recording request in flight at once. */
const RECORD_CONCURRENCY = 16;

/**
 * Records parts stored (`PUT /v1/uploads/{id}/parts`, or one part by its number): every part is
 * checked before any is written, so a bad list records nothing.
 */
export async function recordParts(
  deps: UploadDeps,
  uploadId: string,
  parts: readonly (PartReport & { readonly partNumber: number })[],
  fieldPrefix: (index: number) => string = (i) => `parts.${i}.`,
): Promise<MultipartView> {
  const upload = await pendingMultipart(deps, uploadId);
  parts.forEach((part, i) => {
    checkPartSize(upload, part, fieldPrefix(i));
  });
  const queue = [...parts];
  const writer = async () => {
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      await deps.ledger.recordPart(uploadId, { ...part, etag: canonicalEtag(part.etag) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(RECORD_CONCURRENCY, parts.length) }, writer));
  return multipartView(deps, upload);
}

/** Aborts a pending upload (and its S3 multipart upload): nothing is committed. */
export async function abortUpload(deps: UploadDeps, uploadId: string): Promise<Upload> {
  const upload = await getUpload(deps, uploadId);
  // The ledger first, then storage: a completion running meanwhile then finds the upload ended
  // and leaves it so, instead of reading the parts the abort dropped as an expiry.
  if (upload.status === 'pending') {
    await deps.ledger.finishUpload(
      uploadId,
      { status: 'rejected', reason: 'aborted' },
      deps.clock.now().toISOString(),
    );
  }
  const ended = upload.status === 'pending' ? await getUpload(deps, uploadId) : upload;
  // Aborted, by this call or by an earlier one cut off after its ledger write: dropping the parts
  // and the pointer again is harmless, and finishes what that one left.
  if (ended.status !== 'rejected' || ended.reason !== 'aborted') return ended;
  if (upload.multipart) {
    try {
      await deps.blobs.abortMultipart(upload.sha256, upload.multipart.multipartId);
    } catch (error) {
      // Best effort: the bucket's lifecycle rule aborts incomplete multipart uploads after a day
      // anyway. Storage no longer knowing the upload (an earlier abort dropped it) is no failure.
      if ((error as { name?: string }).name !== 'NoSuchUpload') deps.metrics?.count('MultipartAbortFailed');
    }
  }
  await deps.ledger.removePendingUpload(upload.sha256, uploadId);
  return ended;
}

export async function getUpload(deps: Pick<UploadDeps, 'ledger'>, uploadId: string): Promise<Upload> {
  const upload = await deps.ledger.getUpload(uploadId);
  if (!upload) throw new NotFoundError(`no upload with id "${uploadId}"`, 'uploadId');
  return upload;
}

/** What a client sees of an upload: no internals, and the stored parts while a multipart upload is pending. */
export async function describeUpload(
  deps: Pick<UploadDeps, 'ledger' | 'blobs' | 'clock' | 'metrics'>,
  uploadId: string,
) {
  // Expiry is settled when it is looked at too, not only by the ingest and the scheduled sweep.
  const {
    challenge: _challenge,
    challengeSpent: _spent,
    // The sweep's bookkeeping (core/pending-sweep.ts), not part of the API's answer.
    completionRequestedAt: _requested,
    multipart,
    ...upload
  } = await settleIfLapsed(deps, await getUpload(deps, uploadId));
  if (!multipart) return upload;
  if (upload.status !== 'pending')
    return { ...upload, multipart: { partSize: multipart.partSize, partCount: multipart.partCount } };
  return { ...upload, multipart: await multipartView(deps, { ...upload, multipart } as Upload) };
}

export interface FileView {
  readonly path: string;
  readonly head: FileVersion;
  readonly targets: readonly (TargetState | { targetId: string; status: 'pending'; appliedVersion: 0 })[];
}

export async function getFile(deps: Pick<UploadDeps, 'ledger' | 'targets'>, path: string): Promise<FileView> {
  const head = await deps.ledger.getHead(path);
  if (!head) throw new NotFoundError(`no file at "${path}"`, 'path');
  const states = new Map(
    (
      await deps.ledger.listTargetStates(
        path,
        deps.targets.map((t) => t.id),
      )
    ).map((s) => [s.targetId, s]),
  );
  const targets = deps.targets
    .filter((t) => t.pathPrefix === undefined || path.startsWith(t.pathPrefix))
    .map(
      (t) => states.get(t.id) ?? { targetId: t.id, status: 'pending' as const, appliedVersion: 0 as const },
    );
  return { path, head, targets };
}

/**
 * The id a delete sent under an Idempotency-Key commits its tombstone with: the same for every
 * retry of it, so a retry that runs afresh (its first invocation died after the commit) finds the
 * tombstone it made.
 */
export function deleteRequestId(idempotencyKey: string, path: string): string {
  return keyedRequestId('delete', idempotencyKey, path);
}

/** A delete without ifVersion that keeps losing to new versions gives up after this many tries. */
const DELETE_ATTEMPTS = 5;

/**
 * Commits a tombstone at `path`. `requestId` (deleteRequestId) names the request: a head that is
 * the tombstone it committed already is the answer, not a 404. Without `ifVersion` the tombstone
 * is still conditioned on the head it found live, so deletes at once commit one tombstone (the
 * others find no file), and a new version that lands first is deleted in its turn.
 */
export async function deleteFile(
  deps: CommitDeps,
  path: string,
  ifVersion: number | undefined,
  requestId?: string | undefined,
): Promise<FileVersion> {
  const uploadId = requestId ?? `delete-${randomUUID()}`;
  for (let attempt = 1; ; attempt++) {
    const head = await deps.ledger.getHead(path);
    const own = await findOwnCommit(deps.ledger, path, head, requestId, deps.clock.now());
    if (own) return own;
    if (!isDeletable(path, head, ifVersion)) throw new NotFoundError(`no file at "${path}"`, 'path');
    try {
      return await commitVersion(deps, {
        uploadId,
        path,
        sha256: null,
        size: 0,
        contentType: null,
        deleted: true,
        ifVersion: ifVersion ?? head.version,
      });
    } catch (error) {
      if (ifVersion !== undefined || !(error instanceof VersionConflictError) || attempt >= DELETE_ATTEMPTS)
        throw error;
    }
  }
}

/**
 * A live head can be deleted. A condition on another version than the head's is answered as a
 * conflict whatever the head is now: a client that re-reads and retries on a conflict must not take
 * a path deleted since for one that never was (probe V3).
 */
function isDeletable(
  path: string,
  head: { version: number; deleted: boolean } | undefined,
  ifVersion: number | undefined,
): head is { version: number; deleted: false } {
  if (head?.deleted && ifVersion !== undefined && ifVersion !== head.version)
    throw new VersionConflictError(path, ifVersion, head.version);
  return head !== undefined && !head.deleted;
}

/**
 * A short-lived GET URL for the file's current bytes (at a target, or the origin blob), or for an
 * older version's (`version`: the origin keeps every version's blob while a version names it).
 */
export async function contentUrl(
  deps: UploadDeps,
  path: string,
  targetId: string | undefined,
  version?: number | undefined,
): Promise<string> {
  if (version !== undefined && targetId !== undefined) {
    throw new ValidationError(
      'version',
      'version and target cannot be combined: a target holds the version it applied',
    );
  }
  const wanted =
    version === undefined ? await deps.ledger.getHead(path) : await deps.ledger.getVersion(path, version);
  if (!wanted || wanted.deleted || wanted.sha256 === null) {
    throw version === undefined
      ? new NotFoundError(`no file at "${path}"`, 'path')
      : new NotFoundError(`"${path}" has no version ${version} with content`, 'version');
  }
  const ttl = Math.min(deps.limits.presignTtlSeconds, 300);
  return targetId === undefined
    ? originContentUrl(deps, { ...wanted, sha256: wanted.sha256 }, ttl, version !== undefined)
    : targetContentUrl(deps, wanted, targetId, ttl);
}

/** The origin's verified object version of the file's blob, not whatever was written at the key since. */
async function originContentUrl(
  deps: UploadDeps,
  file: FileVersion & { sha256: string },
  ttl: number,
  older: boolean,
): Promise<string> {
  const blob = await deps.ledger.getBlob(file.sha256);
  if (!blob && older) {
    throw new NotFoundError(
      `the content of version ${file.version} of "${file.path}" is no longer stored`,
      'version',
    );
  }
  // One HeadObject a download: a link to an object storage has lost (deleted behind the system's
  // back, a restore that missed it) redirected the client to S3's own 404, in XML, naming no file.
  // The API says what is wrong instead, and counts it: an operator learns of a loss from this.
  if ((await deps.blobs.stat(file.sha256, blob?.versionId)) === undefined) {
    deps.metrics?.count('ContentMissing');
    throw new NotFoundError(
      `"${file.path}" version ${file.version}: its content is missing from storage (blob ${file.sha256}); ` +
        "it cannot be downloaded from the origin. A target's copy may still be read (?target=)",
      older ? 'version' : 'path',
    );
  }
  return deps.blobs.presignGet(file.sha256, ttl, {
    versionId: blob?.versionId,
    // Only a tombstone has none, and it has no content.
    contentType: file.contentType ?? 'application/octet-stream',
    contentDisposition: contentDisposition(file.contentType),
  });
}

/** The target's copy: the version it applied, which may be older than the head. */
async function targetContentUrl(
  deps: UploadDeps,
  head: FileVersion,
  targetId: string,
  ttl: number,
): Promise<string> {
  const target = deps.targets.find((t) => t.id === targetId);
  const replica = deps.replicas(targetId);
  if (!target) throw new ValidationError('target', `no target "${targetId}"`, { code: 'unknown_target' });
  if (!replica) {
    throw new ValidationError(
      'target',
      `target "${targetId}" is a pull target: it has no bucket to read from`,
      {
        code: 'not_readable',
      },
    );
  }
  const { path } = head;
  const state = await deps.ledger.getTargetState(path, targetId);
  if (!state || state.appliedVersion === 0) {
    throw new NotFoundError(`target "${targetId}" does not hold "${path}" yet`, 'target');
  }
  const applied =
    state.appliedVersion === head.version ? head : await deps.ledger.getVersion(path, state.appliedVersion);
  // The applied version's type, forced: a later version (an SVG over a text file) applied before the
  // link is opened is shown as this one's type, never as its own (probe 10, S2).
  const contentType = applied?.contentType ?? head.contentType ?? 'application/octet-stream';
  return replica.presignGet(path, ttl, { contentType, contentDisposition: contentDisposition(contentType) });
}

/**
 * Types a browser shows without running anything in the storage's origin. Any other (SVG, HTML,
 * XML, scripts: `image/*` admits SVG) is served as an attachment: a browser saves it, and a file
 * someone uploaded runs no script when its content link is opened.
 */
const SHOWN_INLINE = [
  /^image\/(png|jpeg|gif|webp|avif|bmp|x-icon|vnd\.microsoft\.icon|tiff|heic|heif)$/,
  /^(video|audio)\/[\w.+-]+$/,
  /^text\/plain$/,
  /^application\/pdf$/,
];

/** undefined (shown inline) for the types in SHOWN_INLINE; `attachment` for every other. */
export function contentDisposition(contentType: string | null): string | undefined {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return SHOWN_INLINE.some((safe) => safe.test(type)) ? undefined : 'attachment';
}
