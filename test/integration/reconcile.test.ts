import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, PurgeQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sleep } from '../../common/retry.ts';
import type { ReplicationMessage } from '../../contracts/replication-message.ts';
import { SqsFanout } from '../../functions/adapters/sqs-fanout.js';
import { commitVersion } from '../../functions/core/commit.js';
import { measureLag } from '../../functions/core/lag.js';
import { reconcileTargets } from '../../functions/core/reconcile.js';
import { replicateVersion } from '../../functions/core/replicate.js';
import { makeWorld, sha256Hex } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';
import { waitFor } from '../support/wait.js';

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

async function receivedBodies(queueUrl: string): Promise<ReplicationMessage[]> {
  const out: ReplicationMessage[] = [];
  for (;;) {
    const page = await emulators.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }),
    );
    if (!page.Messages?.length) return out;
    for (const m of page.Messages) {
      out.push(JSON.parse(m.Body as string));
      // Deleted as the event-source mapping would: an undeleted message holds up its FIFO group.
      await emulators.sqs.send(
        new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }
  }
}

async function received(queueUrl: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const page = await emulators.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }),
    );
    if (!page.Messages?.length) return out.sort();
    for (const m of page.Messages) {
      const body = JSON.parse(m.Body as string);
      out.push(`${body.path}@${body.version}`);
    }
  }
}

type World = Awaited<ReturnType<typeof makeWorld>>;

/** Target alpha's bucket holds each path's committed content, and a new run finds nothing to re-send. */
async function expectRepaired(world: World, bucket: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const object = await emulators.s3.send(new GetObjectCommand({ Bucket: bucket, Key: path }));
    expect(await object.Body?.transformToString()).toBe(`content of ${path}`);
  }
  expect((await reconcileTargets(world.deps, { targetIds: ['alpha'] })).targets.alpha).toEqual({
    resent: 0,
    missing: 0,
    altered: 0,
  });
}

/** Applies what the target's queue holds, as its replicate function would. */
async function replicateAll(world: World, targetId: string, queueUrl: string): Promise<void> {
  for (const body of await receivedBodies(queueUrl)) {
    await replicateVersion(
      {
        target: world.targets.find((t) => t.id === targetId) as World['targets'][number],
        ledger: world.ledger,
        replica: world.replica(targetId),
        clock: world.deps.clock,
        metrics: world.deps.metrics,
      },
      body,
    );
  }
}

/** Stores `content of <path>` as a verified blob (what the ingest records) and commits it at each path. */
async function commitStored(world: World, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const bytes = Buffer.from(`content of ${path}`);
    const sha256 = sha256Hex(bytes);
    const stored = await emulators.s3.send(
      new PutObjectCommand({ Bucket: world.originBucket, Key: `blobs/${sha256}`, Body: bytes }),
    );
    // What the ingest records once it has verified the bytes: replicate copies that blob.
    await world.ledger.putBlob({
      sha256,
      size: bytes.length,
      verifiedAt: new Date().toISOString(),
      etag: stored.ETag,
      versionId: stored.VersionId,
    });
    await commitVersion(world.deps, {
      uploadId: randomUUID(),
      path,
      sha256,
      size: bytes.length,
      contentType: 'text/plain',
      deleted: false,
    });
  }
}

describe('reconcile (resume after lost queue state)', () => {
  it('re-sends only what each target has not applied; dry-run sends nothing', async () => {
    const world = await makeWorld(emulators);
    const commit = (path: string) =>
      commitVersion(world.deps, {
        uploadId: randomUUID(),
        path,
        sha256: sha256Hex(path),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      });
    await commit('public/a.txt');
    await commit('public/a.txt');
    await commit('private/b.txt');
    // The queues lose everything (a local restart); alpha had applied a.txt v2 already.
    for (const t of world.targets) await emulators.sqs.send(new PurgeQueueCommand({ QueueUrl: t.queueUrl }));
    await world.ledger.recordTargetState({
      targetId: 'alpha',
      path: 'public/a.txt',
      appliedVersion: 2,
      status: 'copied',
      appliedAt: new Date().toISOString(),
    });

    const dry = await reconcileTargets(world.deps, { dryRun: true, checkObjects: false });
    expect(dry).toEqual({
      heads: 2,
      targets: {
        alpha: { resent: 1, missing: 0, altered: 0 },
        beta: { resent: 1, missing: 0, altered: 0 },
        gamma: { resent: 2, missing: 0, altered: 0 },
      },
      // Objects not checked: no bucket listed either.
      foreign: {},
      dryRun: true,
      pages: expect.any(Number),
      cycleComplete: true,
    });
    for (const t of world.targets) expect(await received(t.queueUrl)).toEqual([]);

    const report = await reconcileTargets(world.deps, { checkObjects: false });
    expect(Object.fromEntries(Object.entries(report.targets).map(([id, t]) => [id, t.resent]))).toEqual({
      alpha: 1,
      beta: 1,
      gamma: 2,
    });
    expect(await received(world.targets[0]?.queueUrl as string)).toEqual(['private/b.txt@1']);
    expect(await received(world.targets[1]?.queueUrl as string)).toEqual(['public/a.txt@2']);
    expect(await received(world.targets[2]?.queueUrl as string)).toEqual([
      'private/b.txt@1',
      'public/a.txt@2',
    ]);
  });

  it('finds and repairs replica objects deleted or altered behind its back, and fills a target added later', async () => {
    const world = await makeWorld(emulators);
    const alpha = world.targets[0] as { id: string; queueUrl: string; bucket: string };
    const paths = ['public/keep.txt', 'public/deleted.txt', 'public/altered.txt'];
    await commitStored(world, paths);
    await replicateAll(world, 'alpha', alpha.queueUrl);
    // Behind the system's back: one object deleted, one overwritten.
    await emulators.s3.send(new DeleteObjectCommand({ Bucket: alpha.bucket, Key: 'public/deleted.txt' }));
    await emulators.s3.send(
      new PutObjectCommand({ Bucket: alpha.bucket, Key: 'public/altered.txt', Body: 'vandalised' }),
    );

    const dry = await reconcileTargets(world.deps, { targetIds: ['alpha'], dryRun: true });
    expect(dry.targets.alpha).toEqual({ resent: 2, missing: 1, altered: 1 });
    expect(await receivedBodies(alpha.queueUrl)).toEqual([]);

    const repair = await reconcileTargets(world.deps, { targetIds: ['alpha'] });
    expect(repair.targets.alpha).toEqual({ resent: 2, missing: 1, altered: 1 });
    await replicateAll(world, 'alpha', alpha.queueUrl);
    await expectRepaired(world, alpha.bucket, paths);

    // A target added after the files were committed is filled by the same pass.
    const late = {
      id: 'late',
      kind: 's3' as const,
      queueUrl: await emulators.createFifoQueue(`late-${randomUUID().slice(0, 8)}`),
      bucket: await emulators.createBucket(`late-${randomUUID().slice(0, 8)}`),
    };
    const withLate = {
      ...world.deps,
      targets: [...world.targets, late],
      fanout: new SqsFanout(emulators.sqs, [...world.targets, late]),
    };
    const filled = await reconcileTargets(withLate, { targetIds: ['late'], checkObjects: false });
    expect(filled.targets.late?.resent).toBe(3);
    expect((await receivedBodies(late.queueUrl)).map((b) => b.path).sort()).toEqual([...paths].sort());
  });

  it('a file reconcile finds gone at a replica counts in the lag again until it is back (probe 12, O1)', async () => {
    const world = await makeWorld(emulators);
    const alpha = world.targets[0] as { id: string; queueUrl: string; bucket: string };
    await commitStored(world, ['public/lag-1.txt', 'public/lag-2.txt', 'public/lag-3.txt']);
    for (const target of world.targets.slice(1)) await receivedBodies(target.queueUrl);
    await replicateAll(world, 'alpha', alpha.queueUrl);
    const alphaLag = async () =>
      (await measureLag({ ...world.deps, targets: [world.targets[0] as (typeof world.targets)[number]] }))[0];
    // Every change applied: the watermark moves past all three.
    expect(await alphaLag()).toMatchObject({ pending: 0, caughtUp: true });

    // Lost behind the system's back; reconcile finds it and re-sends it, not yet applied.
    await emulators.s3.send(new DeleteObjectCommand({ Bucket: alpha.bucket, Key: 'public/lag-2.txt' }));
    expect((await reconcileTargets(world.deps, { targetIds: ['alpha'] })).targets.alpha).toMatchObject({
      missing: 1,
      resent: 1,
    });
    expect(await alphaLag()).toMatchObject({
      pending: 1,
      oldestPending: { path: 'public/lag-2.txt', version: 1 },
    });
    // Applied again: nothing pending.
    await replicateAll(world, 'alpha', alpha.queueUrl);
    expect(await alphaLag()).toMatchObject({ pending: 0, caughtUp: true });
  });

  it('two runs at once (EventBridge may start one while the other runs): a row forgotten after the other run’s re-send was applied is re-sent and applied again', async () => {
    const world = await makeWorld(emulators);
    const alpha = world.targets[0] as { id: string; queueUrl: string; bucket: string };
    const paths = ['public/overlap-1.txt', 'public/overlap-2.txt', 'public/overlap-3.txt'];
    await commitStored(world, paths);
    for (const target of world.targets.slice(1)) await receivedBodies(target.queueUrl);
    await replicateAll(world, 'alpha', alpha.queueUrl);
    const lost = paths.slice(0, 2);
    for (const path of lost)
      await emulators.s3.send(new DeleteObjectCommand({ Bucket: alpha.bucket, Key: path }));

    // The target applies re-sends while both runs go on.
    let running = true;
    const applying = (async () => {
      while (running) {
        await replicateAll(world, 'alpha', alpha.queueUrl);
        await sleep(5);
      }
    })();
    // The second run found the objects missing as the first did, but forgets each row only once
    // the first run's re-send has been applied (the interleaving overlap allows): its own re-send
    // is then all that brings the row back.
    const late = new Proxy(world.ledger, {
      get(ledger, name, receiver) {
        if (name === 'forgetTargetState')
          return async (path: string, targetId: string) => {
            await waitFor(`the other run's re-send of ${path} applied`, async () => {
              const [state] = await ledger.listTargetStates(path, [targetId]);
              return state !== undefined && state.appliedVersion >= 1;
            });
            return ledger.forgetTargetState(path, targetId);
          };
        const value = Reflect.get(ledger, name, receiver);
        return typeof value === 'function' ? value.bind(ledger) : value;
      },
    });
    const options = { targetIds: ['alpha'], resume: true };
    // Two invocations may start within one millisecond: their re-sends must still be two messages,
    // not one the FIFO queue deduplicates.
    const clock = vi.spyOn(Date, 'now').mockReturnValue(Date.now());
    const started = [
      reconcileTargets(world.deps, options),
      reconcileTargets({ ...world.deps, ledger: late }, options),
    ];
    clock.mockRestore();
    const runs = await Promise.all(started);
    const forgotten = runs.map((r) => r.targets.alpha?.missing);
    await waitFor('every re-send applied', async () => {
      const lag = await measureLag({
        ...world.deps,
        targets: [world.targets[0] as (typeof world.targets)[number]],
      });
      return lag[0]?.pending === 0;
    });
    running = false;
    await applying;

    // The first run found both; the second forgot at least one row after the first run's re-send of
    // it was applied (a later one it may find back in place already).
    expect(forgotten[0]).toBe(lost.length);
    expect(forgotten[1]).toBeGreaterThanOrEqual(1);
    await expectRepaired(world, alpha.bucket, paths);
  });

  it('fills a target added after 100 files were committed', async () => {
    const world = await makeWorld(emulators);
    const paths = Array.from({ length: 100 }, (_, i) => `public/batch/${String(i).padStart(3, '0')}.txt`);
    for (let i = 0; i < paths.length; i += 10) {
      await Promise.all(
        paths.slice(i, i + 10).map((path) =>
          commitVersion(world.deps, {
            uploadId: randomUUID(),
            path,
            sha256: sha256Hex(path),
            size: 1,
            contentType: 'text/plain',
            deleted: false,
          }),
        ),
      );
    }
    const late = {
      id: 'newcomer',
      kind: 'pull' as const,
      queueUrl: await emulators.createFifoQueue(`newcomer-${randomUUID().slice(0, 8)}`),
    };
    const deps = {
      ...world.deps,
      targets: [...world.targets, late],
      fanout: new SqsFanout(emulators.sqs, [...world.targets, late]),
    };
    const report = await reconcileTargets(deps, { targetIds: ['newcomer'] });
    expect(report).toMatchObject({ heads: 100, targets: { newcomer: { resent: 100 } } });
    expect((await receivedBodies(late.queueUrl)).map((b) => b.path).sort()).toEqual(paths);
  });

  it('a dry-run target plans and counts, and changes nothing', async () => {
    const world = await makeWorld(emulators);
    const bytes = Buffer.from('dry run');
    const sha256 = sha256Hex(bytes);
    await emulators.s3.send(
      new PutObjectCommand({ Bucket: world.originBucket, Key: `blobs/${sha256}`, Body: bytes }),
    );
    const version = await commitVersion(world.deps, {
      uploadId: randomUUID(),
      path: 'public/dry.txt',
      sha256,
      size: bytes.length,
      contentType: 'text/plain',
      deleted: false,
    });
    const [message] = await receivedBodies((world.targets[0] as { queueUrl: string }).queueUrl);
    const outcome = await replicateVersion(
      {
        target: world.targets[0] as (typeof world.targets)[number],
        ledger: world.ledger,
        replica: world.replica('alpha'),
        clock: world.deps.clock,
        metrics: world.deps.metrics,
        dryRun: true,
      },
      message as ReplicationMessage,
    );
    expect(outcome).toEqual({ kind: 'planned', action: 'copy', version: version.version });
    expect(world.deps.metrics.total('ReplicationsPlanned')).toBe(1);
    expect(await world.ledger.getTargetState('public/dry.txt', 'alpha')).toBeUndefined();
    expect(await world.replica('alpha').stat('public/dry.txt')).toBeUndefined();
  });
});

describe('reconcile over runs (a checkpoint)', () => {
  it('a run stopped by its deadline saves where it stands; the next goes on; a cycle visits every head once', async () => {
    const world = await makeWorld(emulators);
    const paths = Array.from({ length: 12 }, (_, i) => `private/many-${i}.txt`);
    for (const path of paths) {
      await commitVersion(world.deps, {
        uploadId: randomUUID(),
        path,
        sha256: sha256Hex(path),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      });
    }
    for (const t of world.targets) await emulators.sqs.send(new PurgeQueueCommand({ QueueUrl: t.queueUrl }));
    // A deadline already past: each run reads exactly one page (of 8 table rows).
    const options = { resume: true, deadline: 0, pageSize: 8, checkObjects: false } as const;
    const first = await reconcileTargets(world.deps, options);
    expect(first).toMatchObject({ pages: 1, cycleComplete: false });
    const saved = await world.ledger.getReconcileCheckpoint();
    expect(saved?.after).toEqual(expect.any(String));
    expect(saved?.heads).toBe(first.heads);

    const runs = [first];
    while (!runs.at(-1)?.cycleComplete && runs.length < 50)
      runs.push(await reconcileTargets(world.deps, options));
    expect(runs.length).toBeGreaterThan(2);
    expect(runs.every((r) => r.pages === 1)).toBe(true);
    // Every head once in the cycle: alpha (no prefix) was sent each path exactly once.
    expect(runs.reduce((n, r) => n + r.heads, 0)).toBe(paths.length);
    expect(runs.reduce((n, r) => n + (r.targets.alpha?.resent ?? 0), 0)).toBe(paths.length);
    expect(await received(world.targets[0]?.queueUrl as string)).toEqual(paths.map((p) => `${p}@1`).sort());
    const ended = await world.ledger.getReconcileCheckpoint();
    expect(ended).toMatchObject({ heads: paths.length, lastCycleEndedAt: expect.any(String) });
    expect(ended?.after).toBeUndefined();

    // The next run begins a new cycle at the first head; a run without `resume` leaves the checkpoint alone.
    const next = await reconcileTargets(world.deps, options);
    expect((await world.ledger.getReconcileCheckpoint())?.heads).toBe(next.heads);
    const full = await reconcileTargets(world.deps, { checkObjects: false, dryRun: true });
    expect(full).toMatchObject({ heads: paths.length, cycleComplete: true });
    expect((await world.ledger.getReconcileCheckpoint())?.heads).toBe(next.heads);
  });

  it('a head read stale by the eventually consistent walk is weighed as it is now', async () => {
    const world = await makeWorld(emulators);
    const commit = (path: string) =>
      commitVersion(world.deps, {
        uploadId: randomUUID(),
        path,
        sha256: sha256Hex(randomUUID()),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      });
    const v1 = await commit('private/stale.txt');
    const v2 = await commit('private/stale.txt');
    await world.ledger.recordTargetState({
      targetId: 'alpha',
      path: 'private/stale.txt',
      appliedVersion: v2.version,
      status: 'copied',
      appliedAt: new Date().toISOString(),
    });
    for (const t of world.targets) await emulators.sqs.send(new PurgeQueueCommand({ QueueUrl: t.queueUrl }));
    // The walk returns v1 (a stale read); gamma is behind either way, alpha holds v2.
    const ledger = new Proxy(world.ledger, {
      get(target, name, receiver) {
        if (name !== 'pageHeads') return Reflect.get(target, name, receiver);
        return async (o: { after?: string; limit: number }) => {
          const page = await target.pageHeads(o);
          return { ...page, heads: page.heads.map((h) => ({ ...h, ...v1, path: h.path })) };
        };
      },
    });
    const report = await reconcileTargets({ ...world.deps, ledger }, { checkObjects: false });
    expect(report.targets.alpha).toEqual({ resent: 0, missing: 0, altered: 0 });
    expect(report.targets.gamma?.resent).toBe(1);
    expect(await received(world.targets[2]?.queueUrl as string)).toEqual([`private/stale.txt@${v2.version}`]);
    expect((await world.ledger.getTargetState('private/stale.txt', 'alpha'))?.appliedVersion).toBe(
      v2.version,
    );
  });
});
