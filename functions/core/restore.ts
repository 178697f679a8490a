/**
 * Restoring a file: an older version's content committed as the path's newest version. The
 * bytes are not sent again: the origin keeps every verified blob by its SHA-256, so the new
 * version points at the blob the old one did, and reaches every target like any commit.
 */
import { randomUUID } from 'node:crypto';
import type { FileVersion } from '../../contracts/model.js';
import { type CommitDeps, commitVersion, folderRuleFor } from './commit.js';
import { MirrorError, NotFoundError, ValidationError } from './errors.js';
import { findOwnCommit, keyedRequestId } from './idempotency.js';
import type { BlobLedger, BlobStore, VersionLedger } from './ports.js';

export interface RestoreDeps extends CommitDeps {
  readonly ledger: VersionLedger & BlobLedger;
  /** The origin: the pinned object the blob record names must still be there. */
  readonly blobs: Pick<BlobStore, 'stat'>;
}

/**
 * The id a restore sent under an Idempotency-Key commits its version with: the same for every
 * retry of it, so a retry that runs afresh (its first invocation died after the commit) finds the
 * version it committed.
 */
export function restoreRequestId(idempotencyKey: string, path: string, from: number): string {
  return keyedRequestId('restore', idempotencyKey, path, from);
}

/**
 * Commits version `from`'s content as the next version of `path` (only if the head is
 * `ifVersion`, when given). A deletion has no content to restore; content whose blob record
 * is gone (rejected and removed), or whose pinned object storage no longer has, cannot be restored
 * without its bytes. `requestId`
 * (restoreRequestId) names the request: a head it committed already is the answer.
 */
export async function restoreVersion(
  deps: RestoreDeps,
  path: string,
  from: number,
  ifVersion: number | undefined,
  requestId?: string | undefined,
): Promise<FileVersion> {
  if (requestId !== undefined) {
    const head = await deps.ledger.getHead(path);
    const own = await findOwnCommit(deps.ledger, path, head, requestId, deps.clock.now());
    if (own) return own;
  }
  const old = await deps.ledger.getVersion(path, from);
  if (!old) throw new NotFoundError(`"${path}" has no version ${from}`, 'from');
  if (old.deleted || old.sha256 === null) {
    throw new ValidationError('from', `version ${from} of "${path}" is a deletion: it has no content`);
  }
  // Committing content storage lost made a head no target and no reader can get (probe V4).
  if (!(await contentStored(deps, old.sha256))) {
    throw new MirrorError(
      `the content of version ${from} of "${path}" is no longer stored: upload it again`,
      {
        code: 'not_found',
        status: 404,
        field: 'from',
      },
    );
  }
  // The path held this content once; another path may have made it a folder, or a file of one of
  // its folders, since.
  const folderRule = await folderRuleFor(deps, path);
  return commitVersion(deps, {
    folderRule,
    uploadId: requestId ?? `restore-${randomUUID()}`,
    path,
    sha256: old.sha256,
    size: old.size,
    contentType: old.contentType,
    deleted: false,
    ifVersion,
  });
}

/**
 * The mirror still has this content: its blob record, and the object version that record pins.
 * The record alone is not the bytes: storage may have lost the object out of band (an operator,
 * a lifecycle rule).
 */
export async function contentStored(
  deps: { readonly ledger: BlobLedger; readonly blobs: Pick<BlobStore, 'stat'> },
  sha256: string,
): Promise<boolean> {
  const blob = await deps.ledger.getBlob(sha256);
  return blob !== undefined && (await deps.blobs.stat(sha256, blob.versionId)) !== undefined;
}
