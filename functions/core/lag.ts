/**
 * Replication lag, computed centrally from the ledger (so a dead agent or a
 * stuck queue still shows lag growing): per target, the age of the oldest
 * committed change it has not applied, and how many such changes there are.
 *
 * Each target keeps a watermark: a feed cursor below which every change is
 * applied (or not selected). A run advances it past applied changes and stops
 * at the first unapplied one in each shard, so each change is looked up once
 * on its way past the watermark, plus a bounded look-ahead to count the backlog.
 */

import type { Change } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { type Cursor, initialCursor } from './changes.js';
import { fanOut } from './commit.js';
import type { Clock, FanoutQueue, Ledger } from './ports.js';

export interface LagDeps {
  readonly ledger: Pick<
    Ledger,
    'readFeed' | 'getTargetState' | 'getWatermark' | 'setWatermark' | 'getAgentHeartbeat' | 'markFannedOut'
  >;
  /** Given, the run also drains the outbox: changes whose fan-out never completed are sent again. */
  readonly fanout?: FanoutQueue | undefined;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly {
    readonly id: string;
    readonly kind: 's3' | 'pull';
    readonly pathPrefix?: string | undefined;
  }[];
}

export interface TargetLag {
  readonly targetId: string;
  readonly kind: 's3' | 'pull';
  /** Age of the oldest committed change not applied; 0 when caught up. */
  readonly lagSeconds: number;
  /** Changes not applied (counted up to the look-ahead limit). */
  readonly pending: number;
  readonly pendingCapped: boolean;
  readonly oldestPending?:
    | { readonly path: string; readonly version: number; readonly committedAt: string }
    | undefined;
  /** Pull targets: seconds since the agent's last heartbeat; undefined if it never reported. */
  readonly heartbeatAgeSeconds?: number | undefined;
}

const PAGE = 100;

/**
 * A commit marks its feed entry right after the fan-out; an entry still unmarked this long after
 * it was appended lost its fan-out (a failed send, or a crash between commit and send).
 */
export const OUTBOX_GRACE_MS = 30_000;

/** Sends an unmarked change again (a distinct deduplication id; targets apply it idempotently). */
async function drainOutbox(deps: LagDeps, change: Change, now: number): Promise<void> {
  if (!deps.fanout || change.fannedOut || now - Date.parse(change.appendedAt) < OUTBOX_GRACE_MS) return;
  await fanOut({ fanout: deps.fanout, targets: deps.targets }, change, { resend: 'outbox' });
  await deps.ledger.markFannedOut(change.shard, change.seq);
}

export async function measureLag(deps: LagDeps, options: { lookAhead?: number } = {}): Promise<TargetLag[]> {
  const lookAhead = options.lookAhead ?? 1000;
  const now = deps.clock.now().getTime();
  return Promise.all(
    deps.targets.map(async (target): Promise<TargetLag> => {
      const stored = await deps.ledger.getWatermark(target.id);
      const watermark: number[] =
        stored?.length === deps.feedShards ? [...stored] : [...initialCursor(deps.feedShards)];
      let pending = 0;
      let oldest: Change | undefined;
      let capped = false;
      const applied = async (c: Change) =>
        !targetSelects(target, c.path) ||
        ((await deps.ledger.getTargetState(c.path, target.id))?.appliedVersion ?? 0) >= c.version;

      for (let shard = 0; shard < deps.feedShards; shard++) {
        let after = watermark[shard] ?? 0;
        let advancing = true;
        scan: for (;;) {
          const page = await deps.ledger.readFeed(shard, after, PAGE);
          for (const change of page) {
            after = change.seq;
            if (await applied(change)) {
              if (advancing) watermark[shard] = change.seq;
              continue;
            }
            advancing = false;
            await drainOutbox(deps, change, now);
            pending++;
            if (!oldest || change.committedAt < oldest.committedAt) oldest = change;
            if (pending >= lookAhead) {
              capped = true;
              break scan;
            }
          }
          if (page.length < PAGE) break;
        }
      }
      await deps.ledger.setWatermark(target.id, watermark as Cursor);
      const heartbeat = target.kind === 'pull' ? await deps.ledger.getAgentHeartbeat(target.id) : undefined;
      return {
        targetId: target.id,
        kind: target.kind,
        lagSeconds: oldest ? Math.max(0, (now - Date.parse(oldest.committedAt)) / 1000) : 0,
        pending,
        pendingCapped: capped,
        oldestPending: oldest && {
          path: oldest.path,
          version: oldest.version,
          committedAt: oldest.committedAt,
        },
        heartbeatAgeSeconds:
          heartbeat === undefined ? undefined : Math.max(0, (now - Date.parse(heartbeat)) / 1000),
      };
    }),
  );
}
