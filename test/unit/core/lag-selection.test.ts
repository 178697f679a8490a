/**
 * The lag monitor's watermark passes changes a target does not select as if applied: they never
 * will be. When the operator widens the target's pathPrefix (or moves it), those changes are
 * selected now and the target lacks them until reconcile re-sends them: the lag must count them
 * from the feed's start, not vouch for a target that does not hold them.
 */
import { describe, expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { measureLag } from '../../../functions/core/lag.js';
import { sha256Hex } from '../../support/domain.js';

const T0 = Date.parse('2026-12-01T00:00:00.000Z');

async function world() {
  const ledger = new InMemoryLedger();
  let now = T0;
  const clock = { now: () => new Date(now) };
  const fanout = { async send() {} };
  const commit = async (path: string) => {
    now += 1000;
    await commitVersion(
      { ledger, clock, feedShards: 2, targets: [{ id: 'beta', kind: 's3' as const }], fanout },
      {
        uploadId: `u-${path}`,
        path,
        sha256: sha256Hex(path),
        size: path.length,
        contentType: 'text/plain',
        deleted: false,
      },
    );
  };
  const applied = (path: string) =>
    ledger.recordTargetState({
      targetId: 'beta',
      path,
      appliedVersion: 1,
      status: 'verified',
      appliedAt: new Date(now).toISOString(),
    });
  const measure = async (pathPrefix?: string) => {
    now += 1000;
    const [lag] = await measureLag({
      ledger,
      clock,
      feedShards: 2,
      targets: [{ id: 'beta', kind: 's3', ...(pathPrefix === undefined ? {} : { pathPrefix }) }],
    });
    return lag;
  };
  return { ledger, commit, applied, measure };
}

describe('lag after a target’s selection changes', () => {
  it('a widened pathPrefix counts the changes the target did not select before and lacks (operator day 2)', async () => {
    const w = await world();
    for (const path of ['public/a.txt', 'private/b.txt', 'private/c.txt']) await w.commit(path);
    await w.applied('public/a.txt');
    expect(await w.measure('public/')).toMatchObject({ pending: 0, caughtUp: true });

    // The operator takes the prefix off: private/ is the target's now, and it holds none of it.
    const widened = await w.measure(undefined);
    expect(widened).toMatchObject({ pending: 2, caughtUp: true });
    expect(widened?.oldestPending?.path).toBe('private/b.txt');
    expect(widened?.lagSeconds).toBeGreaterThan(0);

    await w.applied('private/b.txt');
    await w.applied('private/c.txt');
    expect(await w.measure(undefined)).toMatchObject({ pending: 0, caughtUp: true, lagSeconds: 0 });
  });

  it('a prefix moved elsewhere counts as well; a narrowed one keeps the watermark', async () => {
    const w = await world();
    for (const path of ['public/x/a.txt', 'public/y/b.txt', 'private/c.txt']) await w.commit(path);
    await w.applied('public/x/a.txt');
    await w.applied('public/y/b.txt');
    expect(await w.measure('public/')).toMatchObject({ pending: 0 });
    const watermark = (await w.ledger.getLagRecord('beta'))?.cursor;

    // Narrowed: what the watermark passed is still applied or unselected.
    const narrowed = await w.measure('public/x/');
    expect(narrowed).toMatchObject({ pending: 0, caughtUp: true });
    expect((await w.ledger.getLagRecord('beta'))?.cursor).toEqual(watermark);
    expect((await w.ledger.getLagRecord('beta'))?.selection).toBe('public/x/');

    // Moved: private/ was passed as unselected.
    expect(await w.measure('private/')).toMatchObject({
      pending: 1,
      oldestPending: { path: 'private/c.txt' },
    });
  });

  it('a record saved before the selection was kept goes on from its watermark', async () => {
    const w = await world();
    for (const path of ['public/a.txt', 'private/b.txt']) await w.commit(path);
    await w.applied('public/a.txt');
    await w.applied('private/b.txt');
    await w.ledger.putLagRecord('beta', { cursor: [5, 5] });
    const lag = await w.measure('public/');
    expect(lag).toMatchObject({ pending: 0, caughtUp: true });
    expect((await w.ledger.getLagRecord('beta'))?.cursor).toEqual([5, 5]);
  });
});
