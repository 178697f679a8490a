/**
 * Applying one version at an S3 target. A message is a hint, the ledger is the truth: the
 * version applied is the one the ledger holds (content, size, tombstone), never what the
 * message or the replica object claims. Versions of a path arrive in order (FIFO group = path)
 * but may repeat, come late or be forged: the target's ledger row decides "never backwards".
 */

import type { FileVersion } from '../../contracts/model.js';
import type { PolicyTarget } from '../../contracts/paths.ts';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { replicationMessage } from './commit.js';
import { ValidationError } from './errors.js';
import { PathPolicy } from './paths.js';
import type { Clock, Ledger, Metrics, ReplicaStore } from './ports.js';

export interface ReplicateDeps {
  /** Log and count what would be done; touch nothing. */
  readonly dryRun?: boolean | undefined;
  /** The target this function serves. */
  readonly target: PolicyTarget;
  readonly ledger: Ledger;
  readonly replica: ReplicaStore;
  readonly clock: Clock;
  readonly metrics: Metrics;
}

export type ReplicateOutcome =
  | { kind: 'refused'; reason: string }
  | { kind: 'skipped'; reason: string; heldVersion: number }
  | { kind: 'planned'; action: 'copy' | 'delete'; version: number }
  | { kind: 'applied'; version: number; status: 'copied' | 'verified' | 'deleted' };

export async function replicateVersion(
  deps: ReplicateDeps,
  message: ReplicationMessage,
): Promise<ReplicateOutcome> {
  const { ledger, clock, metrics } = deps;
  const dimensions = { target: deps.target.id };
  const committed = await committedVersion(deps, message);
  if (typeof committed === 'string') {
    // Retrying cannot make a forged or misaddressed message true: counted and dropped, not parked.
    metrics.count('ReplicationsRefused', 1, dimensions);
    return { kind: 'refused', reason: committed };
  }
  const state = await ledger.getTargetState(committed.path, deps.target.id);
  if (state && state.appliedVersion >= committed.version) {
    metrics.count('ReplicationsSkipped', 1, dimensions);
    return {
      kind: 'skipped',
      reason: 'the target already holds this version or a newer one',
      heldVersion: state.appliedVersion,
    };
  }

  if (deps.dryRun) {
    metrics.count('ReplicationsPlanned', 1, dimensions);
    return { kind: 'planned', action: committed.deleted ? 'delete' : 'copy', version: committed.version };
  }

  const { status, etag } = await applyAtTarget(deps, committed);
  await deps.ledger.recordTargetState({
    targetId: deps.target.id,
    path: committed.path,
    appliedVersion: committed.version,
    status: status === 'deleted' ? 'verified' : status,
    appliedAt: clock.now().toISOString(),
    etag,
  });
  metrics.count('FilesReplicated', 1, dimensions);
  const latencyMs = clock.now().getTime() - Date.parse(committed.committedAt);
  metrics.milliseconds('ReplicationLatency', Math.max(0, latencyMs), dimensions);
  return { kind: 'applied', version: committed.version, status };
}

type AppliedStatus = 'copied' | 'verified' | 'deleted';

/** Deletes the path at the target for a tombstone, otherwise copies the committed bytes there. */
async function applyAtTarget(
  deps: ReplicateDeps,
  committed: FileVersion,
): Promise<{ status: AppliedStatus; etag?: string | undefined }> {
  if (committed.deleted || committed.sha256 === null) {
    await deps.replica.delete(committed.path);
    return { status: 'deleted' };
  }
  return copyToTarget(deps, committed, committed.sha256);
}

/**
 * Copies the verified origin blob to the target. A replica that reports the hash it stored is
 * checked against the ledger's: a mismatch throws, so the message is retried, not recorded.
 */
async function copyToTarget(
  deps: ReplicateDeps,
  committed: FileVersion,
  sha256: string,
): Promise<{ status: AppliedStatus; etag?: string | undefined }> {
  const blob = await deps.ledger.getBlob(sha256);
  if (!blob) throw new Error(`the ledger holds no verified blob ${sha256} for ${committed.path}`);
  const copied = await deps.replica.copyFromOrigin({
    ...replicationMessage(deps.target.id, committed),
    sha256,
    sourceVersionId: blob.versionId,
  });
  const storedSha256 = copied.storedSha256;
  if (storedSha256 !== undefined && storedSha256 !== sha256) {
    throw new Error(
      `target ${deps.target.id} stored ${storedSha256} for ${committed.path} v${committed.version}, expected ${sha256}`,
    );
  }
  deps.metrics.bytes('BytesReplicated', committed.size, { target: deps.target.id });
  return { status: storedSha256 === undefined ? 'copied' : 'verified', etag: copied.etag };
}

/**
 * What the ledger holds for the message: its version, or the path's head when that is newer
 * (later versions are on their way in the same FIFO group; applying the newest now is the same
 * end state in fewer copies). A string says why the message is refused.
 */
async function committedVersion(
  deps: ReplicateDeps,
  message: ReplicationMessage,
): Promise<FileVersion | string> {
  if (message.targetId !== deps.target.id)
    return `the message is for target "${message.targetId}", not "${deps.target.id}"`;
  const policy = new PathPolicy([deps.target]);
  let path: string;
  try {
    path = policy.check(message.path);
  } catch (error) {
    if (error instanceof ValidationError) return error.message;
    throw error;
  }
  if (policy.selecting(path).length === 0) return `target "${deps.target.id}" does not take "${path}"`;
  const head = await deps.ledger.getHead(path);
  if (head && head.version >= message.version) return head;
  return (
    (await deps.ledger.getVersion(path, message.version)) ??
    `the ledger holds no version ${message.version} of "${path}"`
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
    reason: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    at: deps.clock.now().toISOString(),
  });
}
