/**
 * Anti-entropy: compare what the ledger says each target should hold with what
 * the target holds, and re-send what is missing, outdated or altered. Runs on a
 * schedule, on demand (`media-mirror reconcile`), and at local start (queue state
 * does not survive a local restart). A target added to the topology is filled
 * by the same pass: it has applied nothing, so every head is re-sent to it.
 */

import { sleep } from '../../common/retry.ts';
import type { FileVersion } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { fanOut } from './commit.js';
import type { FanoutQueue, Ledger, ReplicaStore } from './ports.js';

export interface ReconcileDeps {
  readonly ledger: Ledger;
  readonly fanout: FanoutQueue;
  readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
  /** S3 targets' buckets, to check the objects themselves (not only the ledger's record of them). */
  readonly replicas?: (targetId: string) => ReplicaStore | undefined;
}

export interface TargetReconcile {
  /** Versions re-sent (for any reason). */
  resent: number;
  /** The ledger said applied, but the object is gone. */
  missing: number;
  /** The object differs from what was written (version, hash, size or ETag). */
  altered: number;
}

export interface ReconcileReport {
  readonly heads: number;
  readonly targets: Record<string, TargetReconcile>;
  readonly dryRun: boolean;
}

export interface ReconcileOptions {
  readonly targetIds?: readonly string[];
  /** Count and report, change nothing. */
  readonly dryRun?: boolean;
  /** Check objects in S3 targets (one HEAD per path and target). @default true when replicas are given */
  readonly checkObjects?: boolean;
  /** Upper bound on object checks per second, to spare the buckets' request rates. @default 50 */
  readonly checksPerSecond?: number;
}

type Drift = 'behind' | 'missing' | 'altered' | undefined;

export async function reconcileTargets(
  deps: ReconcileDeps,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  // Distinct from the original send, which the FIFO queue would still deduplicate for 5 minutes.
  const resend = `reconcile-${Date.now()}`;
  const targets = deps.targets.filter((t) => !options.targetIds || options.targetIds.includes(t.id));
  const report: Record<string, TargetReconcile> = Object.fromEntries(
    targets.map((t) => [t.id, { resent: 0, missing: 0, altered: 0 }]),
  );
  const checkObjects = options.checkObjects ?? deps.replicas !== undefined;
  const pace = pacer(options.checksPerSecond ?? 50);
  let heads = 0;
  for await (const head of deps.ledger.scanHeads()) {
    heads++;
    const selecting = targets.filter((t) => targetSelects(t, head.path));
    const states = new Map(
      (
        await deps.ledger.listTargetStates(
          head.path,
          selecting.map((t) => t.id),
        )
      ).map((s) => [s.targetId, s]),
    );
    const needed: { id: string }[] = [];
    for (const target of selecting) {
      const state = states.get(target.id);
      let drift: Drift;
      if ((state?.appliedVersion ?? 0) < head.version) {
        // A path deleted before this target ever held it needs nothing there.
        drift = head.deleted && !state ? undefined : 'behind';
      } else if (checkObjects) {
        const replica = deps.replicas?.(target.id);
        if (replica) {
          await pace();
          drift = objectDrift(head, state?.etag, await replica.stat(head.path));
        }
      }
      if (!drift) continue;
      const counts = report[target.id] as TargetReconcile;
      counts.resent++;
      if (drift === 'missing') counts.missing++;
      if (drift === 'altered') counts.altered++;
      needed.push(target);
      // The row says applied; the object says otherwise: forget the row so the resend is applied.
      if (drift !== 'behind' && !options.dryRun) await deps.ledger.forgetTargetState(head.path, target.id);
    }
    if (needed.length > 0 && !options.dryRun)
      await fanOut({ fanout: deps.fanout, targets: needed }, head, { resend });
  }
  return { heads, targets: report, dryRun: options.dryRun === true };
}

function objectDrift(
  head: FileVersion,
  recordedEtag: string | undefined,
  object:
    | { version: number | undefined; sha256: string | undefined; size: number; etag: string | undefined }
    | undefined,
): Drift {
  if (head.deleted) return object ? 'altered' : undefined;
  if (!object) return 'missing';
  const changed =
    object.version !== head.version ||
    object.sha256 !== head.sha256 ||
    object.size !== head.size ||
    (recordedEtag !== undefined && object.etag !== undefined && object.etag !== recordedEtag);
  return changed ? 'altered' : undefined;
}

/** Spaces calls to at most `perSecond`. */
function pacer(perSecond: number): () => Promise<void> {
  const gapMs = 1000 / perSecond;
  let next = 0;
  return async () => {
    const now = Date.now();
    const wait = next - now;
    next = Math.max(now, next) + gapMs;
    if (wait > 0) await sleep(wait);
  };
}
