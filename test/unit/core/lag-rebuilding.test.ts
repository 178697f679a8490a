/**
 * An agent that starts over (a new server, an empty disk, its state folder removed) fetches the
 * whole library again, while the target's rows, written by the run before, say it holds all of it:
 * measured from the rows alone the target read "caught up", lag 0, and no alarm rang while the
 * server lacked every file. The agent now reports that it is rebuilding and from when; the lag
 * monitor counts the target behind from there until the agent has read the whole feed.
 */
import { describe, expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { measureLag, storedLag } from '../../../functions/core/lag.js';
import { sha256Hex } from '../../support/domain.js';

const T0 = Date.parse('2026-12-01T00:00:00.000Z');
const TARGET = { id: 'onprem', kind: 'pull' as const };

async function world() {
  const ledger = new InMemoryLedger();
  let now = T0;
  const clock = { now: () => new Date(now) };
  const iso = (ms: number) => new Date(ms).toISOString();
  const fanout = { async send() {} };
  for (const path of ['a.txt', 'b.txt', 'c.txt']) {
    now += 60_000;
    await commitVersion(
      { ledger, clock, feedShards: 2, targets: [TARGET], fanout },
      {
        uploadId: `u-${path}`,
        path,
        sha256: sha256Hex(path),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      },
    );
    // The agent's earlier run applied each one.
    await ledger.recordTargetState({
      targetId: TARGET.id,
      path,
      appliedVersion: 1,
      status: 'verified',
      appliedAt: iso(now),
    });
  }
  const measure = async () => {
    now += 1000;
    const [lag] = await measureLag({ ledger, clock, feedShards: 2, targets: [TARGET] });
    return lag;
  };
  return { ledger, measure, iso, now: () => now, advance: (ms: number) => (now += ms), clock };
}

describe('lag of a pull target whose agent rebuilds its folder', () => {
  it('counts from the oldest change the agent may still lack, not from the rows an earlier run wrote', async () => {
    const w = await world();
    expect(await w.measure()).toMatchObject({ lagSeconds: 0, caughtUp: true });

    // Started over an hour later; it has read up to b.txt (committed at T0 + 2 min).
    w.advance(3_600_000);
    w.ledger.recordAgentHeartbeat(TARGET.id, w.iso(w.now()), [], { since: w.iso(T0 + 120_000) });
    const rebuilding = await w.measure();
    expect(rebuilding?.caughtUp).toBe(false);
    expect(rebuilding?.lagSeconds).toBeCloseTo((w.now() - (T0 + 120_000)) / 1000, 0);
    expect(rebuilding?.agentRebuilding).toBe(true);
    // GET /v1/targets reads what the monitor stored.
    const [stored] = await storedLag({ ledger: w.ledger, clock: w.clock, targets: [TARGET] });
    expect(stored).toMatchObject({ caughtUp: false, agentRebuilding: true });
    expect(stored?.lagSeconds).toBe(rebuilding?.lagSeconds);

    // Before it knows from when: behind, not caught up, the lag unknown beyond the rows'.
    w.ledger.recordAgentHeartbeat(TARGET.id, w.iso(w.now()), [], {});
    expect(await w.measure()).toMatchObject({ caughtUp: false, pendingCapped: true, agentRebuilding: true });

    // Done: the rows speak for the disk again.
    w.ledger.recordAgentHeartbeat(TARGET.id, w.iso(w.now()), []);
    expect(await w.measure()).toMatchObject({ lagSeconds: 0, caughtUp: true, agentRebuilding: false });
  });
});
