/**
 * What the upload API does, independent of HTTP: accept an upload claim,
 * commit at once when the bytes are already verified, report state, delete.
 */
import { randomUUID } from 'node:crypto';
import { type CommitDeps, commitVersion } from './commit.js';
import { NotFoundError, ValidationError, VersionConflictError } from './errors.js';
import type { FileVersion, TargetState, Upload } from './model.js';
import type { BlobStore, ReplicaStore } from './ports.js';

export interface UploadDeps extends CommitDeps {
  readonly blobs: BlobStore;
  readonly replicas: (targetId: string) => ReplicaStore | undefined;
  readonly limits: {
    readonly maxUploadBytes: number;
    readonly contentTypes: readonly string[];
    readonly presignTtlSeconds: number;
  };
}

/** Already checked for shape by the API's schema; the domain checks the rules that need config or state. */
export interface UploadRequest {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  readonly ifVersion?: number | undefined;
}

export type UploadResponse =
  | { status: 'committed'; uploadId: string; path: string; version: number; deduplicated: true }
  | {
      status: 'pending';
      uploadId: string;
      path: string;
      upload: { method: 'PUT'; url: string; headers: Record<string, string>; expiresAt: string };
    };

export function contentTypeAllowed(contentType: string, allowed: readonly string[]): boolean {
  const [family] = contentType.toLowerCase().split('/');
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase();
    return p === '*/*' || p === contentType.toLowerCase() || (p.endsWith('/*') && p.slice(0, -2) === family);
  });
}

export async function createUpload(deps: UploadDeps, request: UploadRequest): Promise<UploadResponse> {
  const { ledger, clock, limits } = deps;
  if (request.size > limits.maxUploadBytes) {
    throw new ValidationError('size', `size must be at most ${limits.maxUploadBytes} bytes`, {
      code: 'too_large',
      status: 413,
    });
  }
  if (!contentTypeAllowed(request.contentType, limits.contentTypes)) {
    throw new ValidationError(
      'contentType',
      `contentType must be one of: ${limits.contentTypes.join(', ')}`,
      {
        code: 'unsupported_content_type',
        status: 415,
      },
    );
  }
  if (request.ifVersion !== undefined) {
    const current = (await ledger.latestVersion(request.path))?.version ?? 0;
    if (current !== request.ifVersion)
      throw new VersionConflictError(request.path, request.ifVersion, current);
  }

  const now = clock.now();
  const uploadId = randomUUID();
  const blob = await ledger.getBlob(request.sha256);
  if (blob) {
    if (blob.size !== request.size) {
      throw new ValidationError(
        'size',
        `size does not match the stored content with this sha256 (${blob.size} bytes)`,
        {
          code: 'size_mismatch',
        },
      );
    }
    const upload: Upload = {
      ...request,
      uploadId,
      status: 'pending',
      deduplicated: true,
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
    };
    await ledger.putUpload(upload);
    const version = await commitVersion(deps, {
      uploadId,
      path: request.path,
      sha256: request.sha256,
      size: request.size,
      contentType: request.contentType,
      deleted: false,
      ifVersion: request.ifVersion,
      reserveOnUpload: false,
    });
    await ledger.finishUpload(
      uploadId,
      { status: 'committed', version: version.version },
      clock.now().toISOString(),
    );
    return {
      status: 'committed',
      uploadId,
      path: request.path,
      version: version.version,
      deduplicated: true,
    };
  }

  const expiresAt = new Date(now.getTime() + limits.presignTtlSeconds * 1000);
  await ledger.putUpload({
    ...request,
    uploadId,
    status: 'pending',
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  });
  // After the upload record, so the ingest never finds a pointer to nothing.
  await ledger.addPendingUpload(request.sha256, uploadId);
  const signed = await deps.blobs.presignPut({
    sha256: request.sha256,
    size: request.size,
    contentType: request.contentType,
    expiresInSeconds: limits.presignTtlSeconds,
  });
  return {
    status: 'pending',
    uploadId,
    path: request.path,
    upload: { method: 'PUT', url: signed.url, headers: signed.headers, expiresAt: expiresAt.toISOString() },
  };
}

export async function getUpload(deps: Pick<UploadDeps, 'ledger'>, uploadId: string): Promise<Upload> {
  const upload = await deps.ledger.getUpload(uploadId);
  if (!upload) throw new NotFoundError(`no upload with id "${uploadId}"`, 'uploadId');
  return upload;
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

export async function deleteFile(
  deps: CommitDeps,
  path: string,
  ifVersion: number | undefined,
): Promise<FileVersion> {
  const head = await deps.ledger.getHead(path);
  if (!head || head.deleted) throw new NotFoundError(`no file at "${path}"`, 'path');
  return commitVersion(deps, {
    uploadId: `delete-${randomUUID()}`,
    path,
    sha256: null,
    size: 0,
    contentType: null,
    deleted: true,
    ifVersion,
    reserveOnUpload: false,
  });
}

/** A short-lived GET URL for the file's current bytes: at a target, or the origin blob. */
export async function contentUrl(
  deps: UploadDeps,
  path: string,
  targetId: string | undefined,
): Promise<string> {
  const head = await deps.ledger.getHead(path);
  if (!head || head.deleted || head.sha256 === null) throw new NotFoundError(`no file at "${path}"`, 'path');
  const ttl = Math.min(deps.limits.presignTtlSeconds, 300);
  if (targetId === undefined) return deps.blobs.presignGet(head.sha256, ttl);
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
  const state = await deps.ledger.getTargetState(path, targetId);
  if (!state || state.appliedVersion === 0) {
    throw new NotFoundError(`target "${targetId}" does not hold "${path}" yet`, 'target');
  }
  return replica.presignGet(path, ttl);
}
