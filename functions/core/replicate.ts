/**
 * Applying one version at an S3 target. Versions of a path arrive in order
 * (FIFO group = path) but may repeat or come late: the target never goes back.
 */
import type { ReplicationMessage } from './model.js';
import type { Clock, Ledger, Metrics, ReplicaStore } from './ports.js';

export interface ReplicateDeps {
  /** Log and count what would be done; touch nothing. */
  readonly dryRun?: boolean;
  readonly ledger: Ledger;
  readonly replica: ReplicaStore;
  readonly clock: Clock;
  readonly metrics: Metrics;
}

export type ReplicateOutcome =
  | { kind: 'skipped'; reason: string; heldVersion: number }
  | { kind: 'planned'; action: 'copy' | 'delete'; version: number }
  | { kind: 'applied'; version: number; status: 'copied' | 'verified' | 'deleted' };

export async function replicateVersion(
  deps: ReplicateDeps,
  message: ReplicationMessage,
): Promise<ReplicateOutcome> {
  const { ledger, replica, clock, metrics } = deps;
  const dimensions = { target: message.targetId };
  const state = await ledger.getTargetState(message.path, message.targetId);
  if (state && state.appliedVersion >= message.version) {
    metrics.count('ReplicationsSkipped', 1, dimensions);
    return {
      kind: 'skipped',
      reason: 'the target already holds this version or a newer one',
      heldVersion: state.appliedVersion,
    };
  }
  // The object itself may be newer than the ledger says (a write that landed before its record).
  const present = await replica.stat(message.path);
  if (present?.version !== undefined && present.version > message.version) {
    await record(deps, message, present.version, 'copied');
    metrics.count('ReplicationsSkipped', 1, dimensions);
    return { kind: 'skipped', reason: 'the target object is newer', heldVersion: present.version };
  }

  if (deps.dryRun) {
    metrics.count('ReplicationsPlanned', 1, dimensions);
    return { kind: 'planned', action: message.deleted ? 'delete' : 'copy', version: message.version };
  }

  let status: 'copied' | 'verified' | 'deleted';
  let etag: string | undefined;
  if (message.deleted || message.sha256 === null) {
    await replica.delete(message.path);
    status = 'deleted';
  } else {
    const copied = await replica.copyFromOrigin({ ...message, sha256: message.sha256 });
    const storedSha256 = copied.storedSha256;
    etag = copied.etag;
    if (storedSha256 !== undefined && storedSha256 !== message.sha256) {
      throw new Error(
        `target ${message.targetId} stored ${storedSha256} for ${message.path} v${message.version}, expected ${message.sha256}`,
      );
    }
    status = storedSha256 === undefined ? 'copied' : 'verified';
    metrics.bytes('BytesReplicated', message.size, dimensions);
  }
  await record(deps, message, message.version, status === 'deleted' ? 'verified' : status, etag);
  metrics.count('FilesReplicated', 1, dimensions);
  const latencyMs = clock.now().getTime() - Date.parse(message.committedAt);
  metrics.milliseconds('ReplicationLatency', Math.max(0, latencyMs), dimensions);
  return { kind: 'applied', version: message.version, status };
}

async function record(
  deps: ReplicateDeps,
  message: ReplicationMessage,
  version: number,
  status: 'copied' | 'verified',
  etag?: string,
): Promise<void> {
  await deps.ledger.recordTargetState({
    targetId: message.targetId,
    path: message.path,
    appliedVersion: version,
    status,
    appliedAt: deps.clock.now().toISOString(),
    etag,
  });
}

/** Makes a failure visible on the path's target row (the message itself goes back to the queue, then its DLQ). */
export async function recordReplicationFailure(
  deps: ReplicateDeps,
  message: ReplicationMessage,
  error: unknown,
): Promise<void> {
  deps.metrics.count('ReplicationFailures', 1, { target: message.targetId });
  await deps.ledger.recordTargetFailure({
    targetId: message.targetId,
    path: message.path,
    version: message.version,
    reason: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    at: deps.clock.now().toISOString(),
  });
}
