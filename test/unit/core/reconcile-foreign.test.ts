/**
 * Reconcile looks the other way too: it lists each S3 target's objects under its key prefix and
 * names those the mirror holds no live file for there ("foreign"). A path the mirror deleted is
 * drift it caused: its delete is re-sent. An object the ledger never knew, or one outside the
 * target's path prefix, may be someone's data: reported, never touched.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FileVersion } from '../../../contracts/model.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import type { ReplicaStore } from '../../../functions/core/ports.js';
import { reconcileTargets } from '../../../functions/core/reconcile.js';
import { deleteFile } from '../../../functions/core/uploads.js';
import { randomBytes, recordApplied } from '../../support/domain.js';
import { claimPendingUpload, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';

type Stat = NonNullable<Awaited<ReturnType<ReplicaStore['stat']>>>;

/** A replica bucket in memory: objects by key, files of the mirror under `keyPrefix`. */
class FakeReplica implements Pick<ReplicaStore, 'stat' | 'list'> {
  readonly objects = new Map<string, Stat>();
  /** Pages asked for, and the most keys one page held. */
  pages = 0;
  largestPage = 0;
  /** Every key served, in order (a key listed twice appears twice). */
  readonly served: string[] = [];
  /** Called as each page is asked for (a test's clock moves on). */
  onPage: () => void = () => {};
  constructor(readonly keyPrefix = '') {}

  put(key: string, object: Partial<Stat> = {}): void {
    this.objects.set(key, { version: undefined, sha256: undefined, size: 1, etag: '"e"', ...object });
  }

  /** Paths the walk asked about (a HEAD each in a real bucket). */
  readonly statted: string[] = [];

  async stat(path: string) {
    this.statted.push(path);
    return this.objects.get(`${this.keyPrefix}${path}`);
  }

  async list(options: { after?: string | undefined; limit: number }) {
    this.pages++;
    this.onPage();
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(this.keyPrefix))
      .sort()
      .filter((k) => options.after === undefined || k > options.after);
    const page = keys.slice(0, options.limit);
    this.largestPage = Math.max(this.largestPage, page.length);
    this.served.push(...page);
    return {
      objects: page.map((key) => ({ key, path: key.slice(this.keyPrefix.length) })),
      ...(keys.length > page.length ? { next: page.at(-1) } : {}),
    };
  }
}

async function setup(keyPrefix = '') {
  const s = inMemoryCore({
    targets: [{ id: 'alpha', kind: 's3' as const, pathPrefix: 'media/' }],
  });
  const replica = new FakeReplica(keyPrefix);
  const commit = async (path: string) => {
    const bytes = randomBytes(50);
    await claimPendingUpload(s.ledger, path, bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const head = await s.ledger.getHead(path);
    if (!head) throw new Error(`no head for ${path}`);
    return head;
  };
  /** The target applied the version: its row says so and its object holds it. */
  const applied = async (head: FileVersion) => {
    await recordApplied(s.ledger, 'alpha', head.path, head.version, '"e"');
    replica.put(`${keyPrefix}${head.path}`, {
      version: head.version,
      sha256: head.sha256 ?? undefined,
      size: head.size,
    });
  };
  /** The path deleted and the target's row saying it applied the delete (its object gone); the tombstone. */
  const deletionApplied = async (head: FileVersion) => {
    const tombstone = await deleteFile(s.deps, head.path, head.version);
    await recordApplied(s.ledger, 'alpha', head.path, tombstone.version);
    return tombstone;
  };
  const deps = { ...s.deps, replicas: (id: string) => (id === 'alpha' ? replica : undefined) };
  return { s, replica, commit, applied, deletionApplied, deps };
}

const sentPaths = (sent: readonly ReplicationMessage[]) => sent.map((m) => `${m.path}@${m.version}`);

describe('reconcile: objects in a replica bucket the mirror does not hold', () => {
  it('reports an object the ledger never knew and leaves it; re-sends the delete of a path the mirror deleted', async () => {
    const { s, replica, commit, applied, deletionApplied, deps } = await setup();
    const kept = await commit('media/kept.jpg');
    await applied(kept);
    const gone = await commit('media/gone.jpg');
    await applied(gone);
    // The delete was applied (row and object gone), then the object came back: a copy overtaken
    // by the delete landed after it, or someone put it back. The row still says "deleted, applied".
    const tombstone = await deletionApplied(gone);
    replica.put('media/stray.jpg');
    s.sent.length = 0;

    // The walk alone (no HEADs) sees neither: the listing does. It forgets the row that says the
    // delete was applied, so the walk after it finds the delete behind and re-sends it too.
    const report = await reconcileTargets(deps, { checkObjects: false, listObjects: true });
    expect(report.targets.alpha).toEqual({ resent: 1, missing: 0, altered: 0 });
    expect(report.foreign.alpha).toEqual({
      listed: 3,
      foreign: 2,
      deleted: 1,
      complete: true,
      sample: [
        { key: 'media/gone.jpg', path: 'media/gone.jpg', reason: 'deleted' },
        { key: 'media/stray.jpg', path: 'media/stray.jpg', reason: 'unknown' },
      ],
    });
    // Only the deleted path is re-sent: its tombstone, to be applied again (the row was forgotten),
    // by the listing and the walk, as the one message (the run's tag) the FIFO queue keeps.
    expect(sentPaths(s.sent)).toEqual([
      `media/gone.jpg@${tombstone.version}`,
      `media/gone.jpg@${tombstone.version}`,
    ]);
    expect(await s.ledger.getTargetState('media/gone.jpg', 'alpha')).toBeUndefined();
    expect(await s.ledger.getTargetState('media/kept.jpg', 'alpha')).toBeDefined();
  });

  it('a lost delete (the row still at the old version) is named and re-sent once per run: walk and listing send the same message', async () => {
    const { s, replica, commit, applied, deps } = await setup();
    const gone = await commit('media/lost.jpg');
    await applied(gone);
    const tombstone = await deleteFile(s.deps, 'media/lost.jpg', gone.version);
    const resends: { message: ReplicationMessage; resend: string | undefined }[] = [];
    const fanout = {
      async send(message: ReplicationMessage, options: { resend?: string } = {}) {
        resends.push({ message, resend: options.resend });
      },
    };
    expect(replica.objects.has('media/lost.jpg')).toBe(true);

    const report = await reconcileTargets({ ...deps, fanout });
    expect(report.targets.alpha).toEqual({ resent: 1, missing: 0, altered: 0 });
    expect(report.foreign.alpha).toMatchObject({ foreign: 1, deleted: 1 });
    // Both carry the run's tag: the FIFO queue's deduplication keeps one (path, version, tag).
    expect(resends.map((r) => `${r.message.path}@${r.message.version}`)).toEqual([
      `media/lost.jpg@${tombstone.version}`,
      `media/lost.jpg@${tombstone.version}`,
    ]);
    expect(new Set(resends.map((r) => r.resend)).size).toBe(1);
    expect(resends[0]?.resend).toMatch(/^reconcile-/);
  });

  it('an object outside the target’s path prefix is reported as unselected, never deleted, even if the mirror deleted that path', async () => {
    const { s, replica, commit, deps } = await setup();
    // Once selected (the rule was `docs/` then): live, and deleted, in the mirror.
    await commit('docs/live.txt');
    const old = await commit('docs/old.txt');
    await deleteFile(s.deps, 'docs/old.txt', old.version);
    replica.put('docs/live.txt');
    replica.put('docs/old.txt');
    s.sent.length = 0;

    const report = await reconcileTargets(deps);
    expect(report.foreign.alpha).toMatchObject({
      foreign: 2,
      deleted: 0,
      sample: [
        { key: 'docs/live.txt', path: 'docs/live.txt', reason: 'unselected' },
        { key: 'docs/old.txt', path: 'docs/old.txt', reason: 'unselected' },
      ],
    });
    expect(s.sent).toEqual([]);
  });

  it('maps keys through the target’s key prefix and lists only under it', async () => {
    const { s, replica, commit, applied, deps } = await setup('mirror/');
    const kept = await commit('media/kept.jpg');
    await applied(kept);
    // Outside the mirror's key prefix: not the mirror's to judge.
    replica.put('other/thing.bin');
    // Its path is `media/kept.jpg`'s only once the prefix is taken off: here, the ledger knows none.
    replica.put('mirror/mirror/media/kept.jpg');
    s.sent.length = 0;

    const report = await reconcileTargets(deps);
    expect(report.foreign.alpha).toMatchObject({
      listed: 2,
      foreign: 1,
      sample: [{ key: 'mirror/mirror/media/kept.jpg', path: 'mirror/media/kept.jpg', reason: 'unselected' }],
    });
  });

  it('a dry run names and counts, and sends and forgets nothing', async () => {
    const { s, replica, commit, applied, deletionApplied, deps } = await setup();
    const gone = await commit('media/gone.jpg');
    await applied(gone);
    const tombstone = await deletionApplied(gone);
    replica.put('media/gone.jpg');
    s.sent.length = 0;

    const report = await reconcileTargets(deps, { dryRun: true });
    expect(report.foreign.alpha).toMatchObject({ foreign: 1, deleted: 1 });
    expect(s.sent).toEqual([]);
    expect(await s.ledger.getTargetState('media/gone.jpg', 'alpha')).toMatchObject({
      appliedVersion: tombstone.version,
    });
  });

  it('lists a page at a time and keeps a bounded sample: 2,500 strays in pages of 1,000', async () => {
    const { replica, deps } = await setup();
    for (let i = 0; i < 2500; i++) replica.put(`media/stray-${String(i).padStart(5, '0')}.bin`);

    const report = await reconcileTargets(deps);
    const foreign = report.foreign.alpha;
    expect(foreign).toMatchObject({ listed: 2500, foreign: 2500, deleted: 0, complete: true });
    expect(foreign?.sample).toHaveLength(20);
    expect(foreign?.sample[0]?.key).toBe('media/stray-00000.bin');
    expect(replica.pages).toBe(3);
    expect(replica.largestPage).toBe(1000);
  });

  it('stops listing at the deadline (one page is always read) and says the listing is not complete', async () => {
    const { replica, deps } = await setup();
    for (let i = 0; i < 30; i++) replica.put(`media/stray-${i}.bin`);

    const report = await reconcileTargets(deps, { listPageSize: 10, deadline: Date.now() - 1 });
    expect(report.foreign.alpha).toMatchObject({ listed: 10, foreign: 10, complete: false });
    expect(replica.pages).toBe(1);
  });

  it('a scheduled walk lists at the start of each cycle only, before its first page of heads', async () => {
    const { commit, replica, deps } = await setup();
    await commit('media/a.jpg');
    await commit('media/b.jpg');
    replica.put('media/stray.bin');
    const run = () => reconcileTargets(deps, { resume: true, pageSize: 1, deadline: Date.now() - 1 });

    const first = await run();
    expect(first.foreign.alpha).toMatchObject({ foreign: 1, complete: true });
    expect(first.cycleComplete).toBe(false);
    expect(replica.pages).toBe(1);

    // The run that goes on mid-cycle (and ends it here): no listing.
    const second = await run();
    expect(second.foreign).toEqual({});
    expect(second.cycleComplete).toBe(true);
    expect(replica.pages).toBe(1);

    const next = await run();
    expect(next.foreign.alpha).toMatchObject({ foreign: 1 });
    expect(replica.pages).toBe(2);
  });
});

describe('reconcile: the walk pays no HEAD for a path the mirror deleted where a listing weighs every object', () => {
  /** alpha: one live file, three deleted ones (deletes applied); a stray object back at `media/gone-1.jpg`. */
  async function deletedLibrary() {
    const t = await setup();
    await t.applied(await t.commit('media/kept.jpg'));
    const tombstones: FileVersion[] = [];
    for (const name of ['gone-0', 'gone-1', 'gone-2']) {
      const head = await t.commit(`media/${name}.jpg`);
      await t.applied(head);
      tombstones.push(await t.deletionApplied(head));
      t.replica.objects.delete(`media/${name}.jpg`);
    }
    t.replica.put('media/gone-1.jpg');
    t.s.sent.length = 0;
    return { ...t, tombstones };
  }

  it('a run that lists the whole target HEADs live files only, and still re-sends the delete of the object at a deleted path', async () => {
    const { s, replica, deps, tombstones } = await deletedLibrary();

    const report = await reconcileTargets(deps);
    expect(replica.statted).toEqual(['media/kept.jpg']);
    expect(report.foreign.alpha).toMatchObject({ listed: 2, foreign: 1, deleted: 1, complete: true });
    // The listing forgot the row that said the delete was applied: the walk finds it behind.
    expect(report.targets.alpha).toEqual({ resent: 1, missing: 0, altered: 0 });
    expect(new Set(sentPaths(s.sent))).toEqual(new Set([`media/gone-1.jpg@${tombstones[1]?.version}`]));
  });

  it('without a listing (listObjects false), or with one cut short, the walk HEADs every deleted path', async () => {
    const unlisted = await deletedLibrary();
    const report = await reconcileTargets(unlisted.deps, { listObjects: false });
    expect(unlisted.replica.statted.sort()).toEqual([
      'media/gone-0.jpg',
      'media/gone-1.jpg',
      'media/gone-2.jpg',
      'media/kept.jpg',
    ]);
    expect(report.targets.alpha).toEqual({ resent: 1, missing: 0, altered: 1 });

    // A run that does not resume, stopped by its deadline after one page (someone's object, listed
    // first): the rest of the bucket is not weighed in this cycle, so the walk checks the deleted
    // paths itself, and finds the object at one of them.
    const cut = await deletedLibrary();
    cut.replica.put('media/a-stray.bin');
    const short = await reconcileTargets(cut.deps, { listPageSize: 1, deadline: Date.now() - 1 });
    expect(short.foreign.alpha).toMatchObject({ listed: 1, deleted: 0, complete: false });
    expect(cut.replica.statted).toHaveLength(4);
    expect(short.targets.alpha).toEqual({ resent: 1, missing: 0, altered: 1 });
  });

  it('scheduled runs: the listing goes on over the runs and finds the object the walk did not HEAD', async () => {
    const { s, replica, deps, tombstones } = await deletedLibrary();
    // Listed first: the first run's one page of listing leaves the object at media/gone-1.jpg.
    replica.put('media/a-stray.bin');
    const run = () =>
      reconcileTargets(deps, { resume: true, listPageSize: 1, pageSize: 10, deadline: Date.now() - 1 });

    const first = await run();
    expect(first.foreign.alpha).toMatchObject({ listed: 1, deleted: 0, complete: false });
    expect(first.cycleComplete).toBe(true);
    expect(replica.statted).toEqual(['media/kept.jpg']);
    expect(s.sent).toEqual([]);

    // The next cycle's run goes on with the listing: its page holds the object at the deleted path.
    const second = await run();
    expect(second.foreign.alpha).toMatchObject({ listed: 1, deleted: 1, resumedAfter: 'media/a-stray.bin' });
    expect(new Set(sentPaths(s.sent))).toEqual(new Set([`media/gone-1.jpg@${tombstones[1]?.version}`]));
    expect(replica.statted.filter((p) => p.startsWith('media/gone-'))).toEqual([]);
  });
});

describe('reconcile: a listing of the replica buckets spans scheduled runs', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /**
   * Two S3 targets. alpha: 32 strays, a path the mirror deleted (its delete lost) and two live files,
   * 35 keys; beta: the two live files and 13 strays, 15 keys. Pages of 10 keys. Each page listed and
   * each page of heads read takes a second of a fake clock (Date only: the pacer's sleeps are real).
   */
  async function twoBuckets() {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.parse('2026-12-02T17:00:00Z') });
    const tick = () => vi.setSystemTime(Date.now() + 1000);
    const s = inMemoryCore({
      targets: [
        { id: 'alpha', kind: 's3' as const, pathPrefix: 'media/' },
        { id: 'beta', kind: 's3' as const, pathPrefix: 'media/' },
      ],
    });
    const replicas = { alpha: new FakeReplica(), beta: new FakeReplica() };
    for (const replica of Object.values(replicas)) replica.onPage = tick;
    const commit = async (path: string) => {
      const bytes = randomBytes(50);
      await claimPendingUpload(s.ledger, path, bytes);
      await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
      const head = await s.ledger.getHead(path);
      if (!head) throw new Error(`no head for ${path}`);
      return head;
    };
    for (const path of ['media/kept-1.jpg', 'media/kept-2.jpg']) {
      const head = await commit(path);
      for (const [targetId, replica] of Object.entries(replicas)) {
        await s.ledger.recordTargetState({
          targetId,
          path,
          appliedVersion: head.version,
          status: 'verified',
          appliedAt: new Date().toISOString(),
          etag: '"e"',
        });
        replica.put(path, { version: head.version, sha256: head.sha256 ?? undefined, size: head.size });
      }
    }
    const gone = await commit('media/gone.jpg');
    await deleteFile(s.deps, 'media/gone.jpg', gone.version);
    replicas.alpha.put('media/gone.jpg');
    for (let i = 0; i < 32; i++) replicas.alpha.put(`media/a-${String(i).padStart(2, '0')}.bin`);
    for (let i = 0; i < 13; i++) replicas.beta.put(`media/b-${String(i).padStart(2, '0')}.bin`);
    const pageHeads = s.ledger.pageHeads.bind(s.ledger);
    s.ledger.pageHeads = async (options) => {
      tick();
      return pageHeads(options);
    };
    const deps = {
      ...s.deps,
      replicas: (id: string) => (id === 'alpha' || id === 'beta' ? replicas[id] : undefined),
    };
    return { s, replicas, deps };
  }

  const keysOf = (replica: FakeReplica) => [...replica.objects.keys()].sort();

  it('two runs with time for part of it each list every key once, name every foreign object, then clear the position', async () => {
    const { s, replicas, deps } = await twoBuckets();
    // 5 s: the listing stops starting pages after 2.5 s (3 pages), the walk after 5 s (2 pages of heads).
    const run = () =>
      reconcileTargets(deps, { resume: true, listPageSize: 10, pageSize: 1, deadline: Date.now() + 5000 });

    const first = await run();
    // Three pages of alpha's four: beta not begun, so not in the report.
    expect(first.foreign).toEqual({
      alpha: expect.objectContaining({ listed: 30, foreign: 30, complete: false }),
    });
    expect(first.foreign.alpha?.resumedAfter).toBeUndefined();
    expect(first.cycleComplete).toBe(false);
    expect((await s.ledger.getReconcileCheckpoint())?.listing).toEqual({
      targetId: 'alpha',
      after: 'media/a-29.bin',
    });

    // Mid-cycle, it goes on with the listing where the first run stopped, then with beta.
    const second = await run();
    expect(second.foreign.alpha).toMatchObject({
      resumedAfter: 'media/a-29.bin',
      listed: 5,
      foreign: 3,
      deleted: 1,
      complete: true,
      sample: [
        { key: 'media/a-30.bin', reason: 'unknown' },
        { key: 'media/a-31.bin', reason: 'unknown' },
        { key: 'media/gone.jpg', reason: 'deleted' },
      ],
    });
    expect(second.foreign.beta).toMatchObject({ listed: 15, foreign: 13, deleted: 0, complete: true });
    expect(second.foreign.beta?.resumedAfter).toBeUndefined();
    expect(second.cycleComplete).toBe(true);

    // Every key once; every object the mirror does not hold named once (32 + 1 at alpha, 13 at beta).
    expect(replicas.alpha.served).toEqual(keysOf(replicas.alpha));
    expect(replicas.beta.served).toEqual(keysOf(replicas.beta));
    const foreign = [first, second]
      .flatMap((r) => Object.values(r.foreign))
      .reduce((n, f) => n + f.foreign, 0);
    expect(foreign).toBe(46);
    const checkpoint = await s.ledger.getReconcileCheckpoint();
    expect(checkpoint?.listing).toBeUndefined();
    expect(checkpoint?.lastCycleEndedAt).toBeDefined();

    // The next cycle begins a listing of its own, from the first key (one page: the deadline is past).
    const third = await reconcileTargets(deps, { resume: true, listPageSize: 10, pageSize: 1, deadline: 0 });
    expect(third.foreign).toEqual({ alpha: expect.objectContaining({ listed: 10, complete: false }) });
    expect(third.foreign.alpha?.resumedAfter).toBeUndefined();
    expect(replicas.alpha.served.slice(35)).toEqual(keysOf(replicas.alpha).slice(0, 10));
    expect((await s.ledger.getReconcileCheckpoint())?.listing).toEqual({
      targetId: 'alpha',
      after: 'media/a-09.bin',
    });
  });

  it('a run without resume lists every bucket from its first key and leaves the stored position as it was', async () => {
    const { s, replicas, deps } = await twoBuckets();
    const stored = {
      after: 'media/kept-1.jpg',
      cycleStartedAt: '2026-12-02T16:00:00.000Z',
      heads: 1,
      listing: { targetId: 'alpha', after: 'media/a-29.bin' },
    };
    await s.ledger.putReconcileCheckpoint(stored);

    const report = await reconcileTargets(deps, { listPageSize: 10 });
    expect(report.foreign.alpha).toMatchObject({ listed: 35, foreign: 33, complete: true });
    expect(report.foreign.alpha?.resumedAfter).toBeUndefined();
    expect(report.foreign.beta).toMatchObject({ listed: 15, foreign: 13, complete: true });
    expect(replicas.alpha.served).toEqual(keysOf(replicas.alpha));
    expect(await s.ledger.getReconcileCheckpoint()).toEqual(stored);
  });

  it('a position naming a target no longer listed starts the listing over at the first target', async () => {
    const { s, replicas, deps } = await twoBuckets();
    await s.ledger.putReconcileCheckpoint({
      after: 'media/kept-1.jpg',
      cycleStartedAt: '2026-12-02T16:00:00.000Z',
      heads: 1,
      listing: { targetId: 'retired', after: 'media/zzz' },
    });

    const report = await reconcileTargets(deps, {
      resume: true,
      listPageSize: 10,
      deadline: Date.now() + 60_000,
    });
    expect(report.foreign.alpha).toMatchObject({ listed: 35, complete: true });
    expect(report.foreign.alpha?.resumedAfter).toBeUndefined();
    expect(report.foreign.beta).toMatchObject({ listed: 15, complete: true });
    expect(replicas.alpha.served).toEqual(keysOf(replicas.alpha));
    expect((await s.ledger.getReconcileCheckpoint())?.listing).toBeUndefined();
  });
});
