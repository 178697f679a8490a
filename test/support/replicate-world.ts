/**
 * A replicate handler over an in-memory ledger and replica that log every call: the ledger holds
 * `heads` (path -> head version; without one, each message's own version is found by
 * getVersion), and each copy runs `copy` first (to slow it down or fail it).
 */
import type { FileVersion, TargetState } from '../../contracts/model.js';
import type { PolicyTarget } from '../../contracts/paths.js';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { quietTelemetry } from '../../functions/adapters/powertools.js';
import { systemClock } from '../../functions/adapters/wiring.js';
import type { CopyCheckpoint, CopyUpload, Ledger, ReplicaStore } from '../../functions/core/ports.js';
import type { BatchDeadline } from '../../functions/handlers/fifo-groups.js';
import { createReplicateHandler } from '../../functions/handlers/replicate-handler.js';
import { RecordingMetrics } from './domain.js';
import { fifoRecord } from './sqs-events.js';

const SHA = 'c'.repeat(64);

export function version(path: string, n: number): FileVersion {
  return {
    path,
    version: n,
    sha256: SHA,
    size: 5,
    contentType: 'image/jpeg',
    deleted: false,
    committedAt: new Date().toISOString(),
    uploadId: `upload-${path}-${n}`,
  };
}

export const messageOf = (v: FileVersion): ReplicationMessage => ({
  targetId: 'alpha',
  path: v.path,
  version: v.version,
  sha256: v.sha256,
  size: v.size,
  contentType: v.contentType,
  deleted: v.deleted,
  committedAt: v.committedAt,
});

/** The record of `path` v`n`, grouped by path as the fan-out sends it. */
export const record = (path: string, n: number) =>
  fifoRecord(messageOf(version(path, n)), path, { messageId: `${path}#${n}` });

/**
 * Runs before each copy; `signal` aborts when the invocation must stop; `checkpoint` is where the
 * replica store would keep a multipart copy the deadline stopped (the ledger's `copyUploads`).
 */
export type Copy = (
  message: ReplicationMessage,
  signal: AbortSignal | undefined,
  checkpoint?: CopyCheckpoint | undefined,
) => Promise<void>;

/**
 * A ledger that holds `heads` (path → head version, or no head: each message's own version is
 * found by getVersion) and a replica whose copies run `copy` first. Every call is logged.
 */
export function replicateWorld(
  options: {
    heads?: Record<string, number>;
    copy?: Copy;
    deadline?: BatchDeadline;
    /** Where records stopped by the deadline are handed back. @default recorded in `released` */
    requeue?: { release(receiptHandles: readonly string[]): Promise<void> };
    /** The target the handler serves. @default alpha, taking every path */
    target?: PolicyTarget;
    /** Path → the content of its head, where it is not the content every message names. */
    headSha256?: Record<string, string>;
    /** The SHA-256 the replica reports having stored for a copy. @default none reported */
    storedSha256?: (message: ReplicationMessage) => string | undefined;
  } = {},
) {
  const calls: string[] = [];
  /** The failures recorded on target rows, with the reason every API reader is shown. */
  const failures: { path: string; version: number; reason: string }[] = [];
  const states = new Map<string, TargetState>();
  /** Kept multipart copies by `<target> <path>`. */
  const copyUploads = new Map<string, CopyUpload>();
  const reads = { inFlight: 0, max: 0 };
  /** A read that answers on a later turn, counting how many are outstanding at once. */
  const read = async <T>(answer: () => T): Promise<T> => {
    reads.inFlight++;
    reads.max = Math.max(reads.max, reads.inFlight);
    await new Promise((r) => setTimeout(r, 5));
    reads.inFlight--;
    return answer();
  };
  const headOf = (path: string) => {
    const head = options.heads?.[path];
    if (head === undefined) return undefined;
    const sha256 = options.headSha256?.[path];
    return sha256 === undefined ? version(path, head) : { ...version(path, head), sha256 };
  };
  const verifiedBlob = (sha256: string) => ({
    sha256,
    size: 5,
    verifiedAt: new Date().toISOString(),
    etag: '"e"',
    // Each content's verified object version is its own: a copy must name the one of the bytes it copies.
    versionId: sha256 === SHA ? 'v-verified' : `v-verified-${sha256.slice(0, 8)}`,
  });
  const ledger = {
    readForReplication: async (path: string, _targetId: string, sha256: string | undefined) => {
      calls.push(`readForReplication ${path}${sha256 === undefined ? '' : ' with blob'}`);
      return read(() => ({
        head: headOf(path),
        state: states.get(path),
        blob: sha256 === undefined ? undefined : verifiedBlob(sha256),
      }));
    },
    getHead: async (path: string) => {
      calls.push(`getHead ${path}`);
      return read(() => headOf(path));
    },
    getVersion: async (path: string, n: number) => {
      calls.push(`getVersion ${path} ${n}`);
      return version(path, n);
    },
    getTargetState: async (path: string) => {
      calls.push(`getTargetState ${path}`);
      return read(() => states.get(path));
    },
    getBlob: async (sha256: string) => {
      calls.push('getBlob');
      return read(() => verifiedBlob(sha256));
    },
    recordTargetState: async (state: TargetState) => {
      calls.push(`recordTargetState ${state.path} ${state.appliedVersion}`);
      const held = states.get(state.path);
      if (held && held.appliedVersion >= state.appliedVersion) return false;
      states.set(state.path, state);
      return true;
    },
    recordTargetFailure: async (failure: { path: string; version: number; reason: string }) => {
      calls.push(`recordTargetFailure ${failure.path} ${failure.version}`);
      failures.push(failure);
    },
    getCopyUpload: async (targetId: string, path: string) => copyUploads.get(`${targetId} ${path}`),
    putCopyUpload: async (targetId: string, path: string, upload: CopyUpload) => {
      copyUploads.set(`${targetId} ${path}`, upload);
    },
    deleteCopyUpload: async (targetId: string, path: string, uploadId: string) => {
      if (copyUploads.get(`${targetId} ${path}`)?.uploadId === uploadId)
        copyUploads.delete(`${targetId} ${path}`);
    },
  } as unknown as Ledger;
  const copied: string[] = [];
  const metrics = new RecordingMetrics();
  /** Receipt handles handed back to the queue at once (records stopped by the deadline). */
  const released: string[] = [];
  const replica = {
    copyFromOrigin: async (
      message: ReplicationMessage & { sourceVersionId?: string | undefined },
      copyOptions: { signal?: AbortSignal; checkpoint?: CopyCheckpoint } = {},
    ) => {
      calls.push(`copy ${message.path} ${message.version} from ${message.sourceVersionId}`);
      await options.copy?.(message, copyOptions.signal, copyOptions.checkpoint);
      copied.push(`${message.path} ${message.version}`);
      return { storedSha256: options.storedSha256?.(message), etag: '"replica"' };
    },
  } as unknown as ReplicaStore;
  const handler = createReplicateHandler({
    target: options.target ?? { id: 'alpha', kind: 's3' },
    ledger,
    replica,
    clock: systemClock,
    telemetry: quietTelemetry(metrics),
    deadline: options.deadline,
    requeue: {
      release: async (receiptHandles: readonly string[]) => {
        released.push(...receiptHandles);
        await options.requeue?.release(receiptHandles);
      },
    },
  });
  return { handler, calls, copied, states, reads, metrics, released, copyUploads, failures };
}
