/**
 * Anti-entropy: compare what the ledger says each target should hold with what
 * the target reports, and re-send what is missing. Run at local start (SQS state
 * does not survive a restart there) and, in a later issue, on a schedule.
 */
import { fanOut } from './commit.js';
import type { FanoutQueue, Ledger } from './ports.js';
import { targetSelects } from './topology.js';

export interface ReconcileDeps {
  readonly ledger: Ledger;
  readonly fanout: FanoutQueue;
  readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
}

export interface ReconcileReport {
  readonly heads: number;
  /** Per target: versions re-sent because the target had not applied them. */
  readonly resent: Record<string, number>;
  readonly dryRun: boolean;
}

export async function reconcileTargets(
  deps: ReconcileDeps,
  options: { targetIds?: readonly string[]; dryRun?: boolean } = {},
): Promise<ReconcileReport> {
  // Distinct from the original send, which the FIFO queue would still deduplicate for 5 minutes.
  const resend = `reconcile-${Date.now()}`;
  const targets = deps.targets.filter((t) => !options.targetIds || options.targetIds.includes(t.id));
  const resent: Record<string, number> = Object.fromEntries(targets.map((t) => [t.id, 0]));
  let heads = 0;
  for await (const head of deps.ledger.scanHeads()) {
    heads++;
    const states = new Map(
      (
        await deps.ledger.listTargetStates(
          head.path,
          targets.map((t) => t.id),
        )
      ).map((s) => [s.targetId, s]),
    );
    const behind = targets.filter(
      (t) => targetSelects(t, head.path) && (states.get(t.id)?.appliedVersion ?? 0) < head.version,
    );
    // A path never applied anywhere and now deleted needs nothing at the targets that never had it.
    const needed = behind.filter((t) => !(head.deleted && !states.has(t.id)));
    if (needed.length === 0) continue;
    for (const t of needed) resent[t.id] = (resent[t.id] ?? 0) + 1;
    if (!options.dryRun) await fanOut({ fanout: deps.fanout, targets: needed }, head, { resend });
  }
  return { heads, resent, dryRun: options.dryRun === true };
}
