import { randomUUID } from 'node:crypto';
import { PurgeQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitVersion } from '../../functions/core/commit.js';
import { reconcileTargets } from '../../functions/core/reconcile.js';
import { makeWorld, sha256Hex } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

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
        reserveOnUpload: false,
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

    const dry = await reconcileTargets(world.deps, { dryRun: true });
    expect(dry).toEqual({ heads: 2, resent: { alpha: 1, beta: 1, gamma: 2 }, dryRun: true });
    for (const t of world.targets) expect(await received(t.queueUrl)).toEqual([]);

    const report = await reconcileTargets(world.deps);
    expect(report.resent).toEqual({ alpha: 1, beta: 1, gamma: 2 });
    expect(await received(world.targets[0]?.queueUrl as string)).toEqual(['private/b.txt@1']);
    expect(await received(world.targets[1]?.queueUrl as string)).toEqual(['public/a.txt@2']);
    expect(await received(world.targets[2]?.queueUrl as string)).toEqual([
      'private/b.txt@1',
      'public/a.txt@2',
    ]);
  });
});
