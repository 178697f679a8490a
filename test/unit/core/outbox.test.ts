/**
 * The feed entry is the outbox (docs/design-notes.md, "Why each invariant holds" 9): a commit whose
 * fan-out was lost after the transaction leaves its entry unmarked, and the lag monitor sends it
 * again once it is older than OUTBOX_GRACE_MS, then marks it. Without this, the version would reach
 * no target until reconcile's next cycle.
 */
import { describe, expect, it } from 'vitest';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { measureLag, OUTBOX_GRACE_MS } from '../../../functions/core/lag.js';
import { sha256Hex } from '../../support/domain.js';

describe('the outbox: a fan-out lost after the commit', () => {
  it('is sent again by the lag monitor once past the grace, to each selecting target, and marked so it is sent once', async () => {
    const ledger = new InMemoryLedger();
    let now = Date.parse('2026-12-01T00:00:00.000Z');
    const clock = { now: () => new Date(now) };
    const sent: { message: ReplicationMessage; resend: string | undefined }[] = [];
    let lost = true;
    const fanout = {
      async send(message: ReplicationMessage, options?: { resend?: string }) {
        if (lost) throw new Error('the fan-out died after the commit');
        sent.push({ message, resend: options?.resend });
      },
    };
    const targets = [
      { id: 'alpha', kind: 's3' as const },
      { id: 'beta', kind: 's3' as const, pathPrefix: 'public/' },
    ];
    const deps = { ledger, clock, feedShards: 1, targets, fanout };
    await expect(
      commitVersion(deps, {
        uploadId: 'u-1',
        path: 'media/lost.txt',
        sha256: sha256Hex('lost'),
        size: 4,
        contentType: 'text/plain',
        deleted: false,
      }),
    ).rejects.toThrow(/fan-out died/);
    lost = false;
    expect((await ledger.readFeed(0, 0, 10)).map((c) => c.fannedOut ?? false)).toEqual([false]);

    // Within the grace the commit's own fan-out may still be on its way: nothing is sent.
    now += OUTBOX_GRACE_MS / 2;
    await measureLag(deps);
    expect(sent).toEqual([]);

    now += OUTBOX_GRACE_MS;
    await measureLag(deps);
    expect(sent.map((s) => `${s.message.targetId}:${s.message.path}@${s.message.version}`)).toEqual([
      'alpha:media/lost.txt@1',
    ]);
    expect(sent[0]?.resend).toBeDefined();
    expect((await ledger.readFeed(0, 0, 10)).map((c) => c.fannedOut)).toEqual([true]);

    await measureLag(deps);
    expect(sent).toHaveLength(1);
  });
});
