/**
 * Applying one version at an S3 target. A message is a hint, the ledger is the truth: the
 * version applied is the one the ledger holds (content, size, tombstone), never what the
 * message or the replica object claims. Versions of a path arrive in order (FIFO group = path)
 * but may repeat, come late or be forged: the target's ledger row decides "never backwards".
 */

import { crashDuring, crashPoint } from '../../common/crash-points.ts';
import type { Blob, FileVersion } from '../../contracts/model.js';
import type { PolicyTarget } from '../../contracts/paths.ts';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { replicationMessage } from './commit.js';
import { MirrorError, ValidationError } from './errors.js';
import { PathPolicy } from './paths.js';
import type {
  BlobLedger,
  Clock,
  CopyCheckpoint,
  Metrics,
  ReplicaStore,
  TargetLedger,
  VersionLedger,
} from './ports.js';

export interface ReplicateDeps {
  /** Log and count what would be done; touch nothing. */
  readonly dryRun?: boolean | undefined;
  /** The target this function serves. */
  readonly target: PolicyTarget;
  readonly ledger: VersionLedger & BlobLedger & TargetLedger;
  readonly replica: ReplicaStore;
  readonly clock: Clock;
  readonly metrics: Metrics;
}

export type ReplicateOutcome =
  | { kind: 'refused'; reason: string }
  | { kind: 'skipped'; reason: string; heldVersion: number }
  | { kind: 'planned'; action: 'copy' | 'delete'; version: number }
  | { kind: 'applied'; version: number; status: 'copied' | 'verified' | 'deleted' };

/**
 * What this invocation knows a target holds at least, by path: versions it recorded itself or
 * read from the ledger. A later message of the same path (its FIFO group) that is not newer is
 * skipped without reading back the row just written. Scoped to one batch: reconcile may forget a
 * row between batches, and the next batch must then see the ledger again.
 */
export type KnownApplied = Map<string, number>;

export async function replicateVersion(
  deps: ReplicateDeps,
  message: ReplicationMessage,
  known: KnownApplied = new Map(),
  /** Aborts when the invocation must stop: a copy in flight is abandoned cleanly, nothing recorded. */
  signal?: AbortSignal,
): Promise<ReplicateOutcome> {
  const { metrics } = deps;
  const dimensions = { target: deps.target.id };
  const held = message.targetId === deps.target.id ? known.get(message.path) : undefined;
  if (held !== undefined && held >= message.version) return skipped(deps, held);
  const path = acceptedPath(deps, message);
  if (path.refused !== undefined) return refused(deps, path.refused);
  const { committed, state, hintedBlob } = await readLedger(deps, path.path, message);
  if (typeof committed === 'string') return refused(deps, committed);
  if (state) known.set(committed.path, state.appliedVersion);
  if (state && state.appliedVersion >= committed.version) return skipped(deps, state.appliedVersion);

  if (deps.dryRun) {
    metrics.count('ReplicationsPlanned', 1, dimensions);
    return { kind: 'planned', action: committed.deleted ? 'delete' : 'copy', version: committed.version };
  }

  const blob = hintedBlob?.sha256 === committed.sha256 ? hintedBlob : undefined;
  signal?.throwIfAborted();
  const { status, etag } = await applyAtTarget(deps, committed, blob, signal);
  crashPoint('replicate.before-target-row');
  if (!(await recordApplied(deps, committed, status, etag))) {
    // The row holds a newer version: its copy may have landed before this one, which then wrote
    // older bytes over it (a copy that outlived its invocation). The newest is applied again.
    // Not on the invocation's signal: this runs when a copy outlived its invocation, whose stop
    // has come; the restore must land whatever the deadline.
    const newer = await restoreNewest(deps, committed);
    known.set(committed.path, newer);
    return skipped(deps, newer);
  }
  known.set(committed.path, committed.version);
  metrics.count('FilesReplicated', 1, dimensions);
  const latencyMs = deps.clock.now().getTime() - Date.parse(committed.committedAt);
  metrics.milliseconds('ReplicationLatency', Math.max(0, latencyMs), dimensions);
  return { kind: 'applied', version: committed.version, status };
}

/**
 * Records the version applied at the target. False only when the row holds a newer version;
 * the same version recorded by another delivery (the same bytes) counts as recorded.
 */
async function recordApplied(
  deps: ReplicateDeps,
  applied: FileVersion,
  status: AppliedStatus,
  etag: string | undefined,
): Promise<boolean> {
  const recorded = await deps.ledger.recordTargetState({
    targetId: deps.target.id,
    path: applied.path,
    appliedVersion: applied.version,
    status: status === 'deleted' ? 'verified' : status,
    appliedAt: deps.clock.now().toISOString(),
    etag,
  });
  if (recorded) return true;
  const state = await deps.ledger.getTargetState(applied.path, deps.target.id);
  return (state?.appliedVersion ?? 0) <= applied.version;
}

/** How many times a copy overtaken by a newer one puts the newest back before the message is retried. */
const RESTORE_ATTEMPTS = 3;

/**
 * Applies the path's head again after an older copy may have overwritten it; the version the target
 * then holds. Each round re-reads the head: another newer copy may be racing this one too.
 */
async function restoreNewest(deps: ReplicateDeps, overtaken: FileVersion) {
  for (let attempt = 1; ; attempt++) {
    const read = await deps.ledger.readForReplication(overtaken.path, deps.target.id, undefined);
    const head = read.head;
    if (!head)
      throw new Error(`the ledger has no head for ${overtaken.path}, which target ${deps.target.id} holds`);
    const { status, etag } = await applyAtTarget(deps, head, undefined, undefined);
    if (await recordApplied(deps, head, status, etag)) return head.version;
    if (attempt >= RESTORE_ATTEMPTS) {
      // The message comes back from the queue (then reconcile, which compares the object itself).
      throw new Error(
        `target ${deps.target.id}: ${overtaken.path} v${overtaken.version} was overtaken by newer copies ${attempt} times`,
      );
    }
  }
}

/**
 * The path's head, the target's row and the blob the message names, in one ledger read. The blob
 * is nearly always the committed one; the caller uses it only if the ledger agrees.
 */
async function readLedger(deps: ReplicateDeps, path: string, message: ReplicationMessage) {
  const hinted = message.sha256 === null || deps.dryRun ? undefined : message.sha256;
  const read = await deps.ledger.readForReplication(path, deps.target.id, hinted);
  const committed = await committedVersion(deps, path, message.version, read.head);
  return { committed, state: read.state, hintedBlob: read.blob };
}

function skipped(deps: ReplicateDeps, heldVersion: number): ReplicateOutcome {
  deps.metrics.count('ReplicationsSkipped', 1, { target: deps.target.id });
  return { kind: 'skipped', reason: 'the target already holds this version or a newer one', heldVersion };
}

/** Retrying cannot make a forged or misaddressed message true: counted and dropped, not parked. */
function refused(deps: ReplicateDeps, reason: string): ReplicateOutcome {
  deps.metrics.count('ReplicationsRefused', 1, { target: deps.target.id });
  return { kind: 'refused', reason };
}

type AppliedStatus = 'copied' | 'verified' | 'deleted';

/** Deletes the path at the target for a tombstone, otherwise copies the committed bytes there. */
async function applyAtTarget(
  deps: ReplicateDeps,
  committed: FileVersion,
  knownBlob: Blob | undefined,
  signal: AbortSignal | undefined,
): Promise<{ status: AppliedStatus; etag?: string | undefined }> {
  if (committed.deleted || committed.sha256 === null) {
    await deps.replica.delete(committed.path);
    return { status: 'deleted' };
  }
  return copyToTarget(deps, committed, committed.sha256, knownBlob, signal);
}

/**
 * Copies the verified origin blob to the target. A replica that reports the hash it stored is
 * checked against the ledger's: a mismatch throws, so the message is retried, not recorded.
 */
async function copyToTarget(
  deps: ReplicateDeps,
  committed: FileVersion,
  sha256: string,
  knownBlob: Blob | undefined,
  signal: AbortSignal | undefined,
): Promise<{ status: AppliedStatus; etag?: string | undefined }> {
  const blob = knownBlob ?? (await deps.ledger.getBlob(sha256));
  if (!blob) throw new Error(`the ledger holds no verified blob ${sha256} for ${committed.path}`);
  const copy = deps.replica.copyFromOrigin(
    { ...replicationMessage(deps.target.id, committed), sha256, sourceVersionId: blob.versionId },
    { ...(signal === undefined ? {} : { signal }), checkpoint: copyCheckpoint(deps, committed.path) },
  );
  const copied = await crashDuring('replicate.mid-copy', copy);
  const storedSha256 = copied.storedSha256;
  if (storedSha256 !== undefined && storedSha256 !== sha256) {
    throw new Error(
      `target ${deps.target.id} stored ${storedSha256} for ${committed.path} v${committed.version}, expected ${sha256}`,
    );
  }
  deps.metrics.bytes('BytesReplicated', committed.size, { target: deps.target.id });
  return { status: storedSha256 === undefined ? 'copied' : 'verified', etag: copied.etag };
}

/** The message's path as the policy spells it, if this target takes it; otherwise why not. */
function acceptedPath(
  deps: ReplicateDeps,
  message: ReplicationMessage,
): { path: string; refused?: undefined } | { refused: string } {
  if (message.targetId !== deps.target.id)
    return { refused: `the message is for target "${message.targetId}", not "${deps.target.id}"` };
  const policy = new PathPolicy([deps.target]);
  let path: string;
  try {
    path = policy.check(message.path);
  } catch (error) {
    if (error instanceof ValidationError) return { refused: error.message };
    throw error;
  }
  if (policy.selecting(path).length === 0)
    return { refused: `target "${deps.target.id}" does not take "${path}"` };
  return { path };
}

/**
 * What the ledger holds for the message: its version, or the path's head when that is newer
 * (later versions are on their way in the same FIFO group; applying the newest now is the same
 * end state in fewer copies). A string says why the message is refused.
 */
async function committedVersion(
  deps: ReplicateDeps,
  path: string,
  version: number,
  head: FileVersion | undefined,
): Promise<FileVersion | string> {
  if (head && head.version >= version) return head;
  return (
    (await deps.ledger.getVersion(path, version)) ?? `the ledger holds no version ${version} of "${path}"`
  );
}

/** Makes a failure visible on the path's target row (the message itself goes back to the queue, then its DLQ). */
export async function recordReplicationFailure(
  deps: ReplicateDeps,
  message: ReplicationMessage,
  error: unknown,
): Promise<void> {
  deps.metrics.count('ReplicationFailures', 1, { target: deps.target.id });
  await deps.ledger.recordTargetFailure({
    targetId: deps.target.id,
    path: message.path,
    version: message.version,
    reason: publicReason(error),
    at: deps.clock.now().toISOString(),
  });
}

/**
 * What the target's row says of a failure: every API reader sees it (`GET /v1/files/{path}`,
 * `status <path>`), uploaders and browser users too, not the operators alone. A domain error's own
 * words; of anything else (a storage service's answer, a network error) its name, status or code
 * only: S3's AccessDenied text names the account, the role and the bucket, a network error the
 * address. The whole error is in the replicate function's log, next to the record.
 */
function publicReason(error: unknown): string {
  if (error instanceof MirrorError) return `${error.name}: ${error.message}`;
  if (!(error instanceof Error)) return "failed: the replicate function's log has the error";
  const status = (error as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
  const code = (error as { code?: unknown }).code;
  const detail =
    typeof status === 'number' ? ` (HTTP ${status})` : typeof code === 'string' ? ` (${code})` : '';
  return `${error.name}${detail}: the replicate function's log has the whole message`;
}

/**
 * The ledger keeps a large copy's open multipart upload between invocations, one record per path at
 * the target (a path's versions are applied one at a time, in order): the replica store continues
 * the copy a deadline stopped instead of starting it over, so no object is too large to replicate.
 */
function copyCheckpoint(deps: ReplicateDeps, path: string): CopyCheckpoint {
  const targetId = deps.target.id;
  return {
    load: () => deps.ledger.getCopyUpload(targetId, path),
    save: (upload) => deps.ledger.putCopyUpload(targetId, path, upload),
    clear: (uploadId) => deps.ledger.deleteCopyUpload(targetId, path, uploadId),
  };
}
