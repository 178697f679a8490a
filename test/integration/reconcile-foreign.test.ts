/**
 * `media-mirror reconcile` on the local stack lists the replica bucket and names the objects the
 * mirror does not hold there: a path deleted in the mirror whose replica delete was lost (its
 * delivery dropped) is named and its delete re-sent, so the replica's copy goes; an object written
 * straight into the bucket is named and left alone.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { localApi } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

const TARGET = 'eu-west-1';
/** Files under `mirror/` in the bucket: the listing maps keys to paths through it. */
const KEY_PREFIX = 'mirror/';

let stack: TestStack;
let sandbox: Sandbox;

beforeAll(async () => {
  stack = await startTestStack('foreign', {
    topology: parseTopology({
      homeRegion: 'us-east-1',
      targets: [{ id: TARGET, kind: 's3', region: 'eu-west-1', keyPrefix: KEY_PREFIX }],
    }),
    // Reconcile runs when the test runs the CLI; nothing else re-sends the lost delete.
    schedules: { lagIntervalSeconds: 0, reconcileIntervalSeconds: 0, reconcileAtStart: false },
    queues: { targetVisibilityTimeout: 5 },
    // The replica HEADs a reconcile run makes, counted where the local S3 receives them.
    observeCalls: true,
  });
  sandbox = stack.sandbox;
});
afterAll(async () => {
  await stack?.stop();
});

const api = (method: string, path: string, body?: unknown) =>
  localApi(sandbox.endpoints).call(method, path, body);
const bucket = () => sandbox.endpoints.targets[TARGET]?.bucket as string;

async function replicaHolds(key: string): Promise<boolean> {
  try {
    await stack.s3For(bucket()).send(new GetObjectCommand({ Bucket: bucket(), Key: key }));
    return true;
  } catch {
    return false;
  }
}

async function upload(path: string): Promise<void> {
  const bytes = Buffer.from(`${path} ${Math.random()}\n`.repeat(50));
  const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, 'image/png');
  expect(created.status).toBe(201);
  expect(putStatus).toBe(200);
  await waitFor(`${path} at the replica`, async () =>
    (await replicaHolds(`${KEY_PREFIX}${path}`)) ? true : undefined,
  );
}

/** Waits until the ledger records the target's copy of the path (at `version` at least): no delivery for it is left. */
const recorded = (path: string, version = 1) =>
  waitFor(`${TARGET} row of ${path}`, async () => {
    const f = await api('GET', `/v1/files/${encodeURIComponent(path)}`);
    const row = f.body?.targets?.find((t: { id: string }) => t.id === TARGET);
    return row && row.appliedVersion >= version && row.status !== 'failed' ? row : undefined;
  });

/**
 * The app id the CLI's SDK clients send while a test asks (the CLI runs in this process, and the SDK
 * reads `AWS_SDK_UA_APP_ID` from its environment), so that the local S3 names its calls
 * (local/observed-calls.ts).
 */
const CLI_APP_ID = 'reconcile-cli';

async function reconcile(): Promise<{
  targets: Record<string, unknown>;
  foreign: Record<
    string,
    { listed: number; foreign: number; deleted: number; complete: boolean; sample: unknown[] }
  >;
}> {
  vi.stubEnv('AWS_SDK_UA_APP_ID', CLI_APP_ID);
  const run = await stack.cli('reconcile', '--target', TARGET, '--json').finally(() => vi.unstubAllEnvs());
  expect(run.err).toBe('');
  expect(run.code).toBe(0);
  return JSON.parse(run.out);
}

describe('reconcile: objects in a replica bucket the mirror does not hold', () => {
  it('names a lost delete and a stray object; re-sends the delete only, and the stray stays', async () => {
    await upload('media/kept.png');
    await upload('media/gone.png');
    await recorded('media/kept.png');
    await recorded('media/gone.png');

    // The delete's delivery to the target is dropped (the only one to its replicate function now):
    // the replica keeps the deleted file.
    sandbox.faults.deliveries.set({ drop: 1, only: [`replicate-${TARGET}`] });
    const deleted = await api('DELETE', `/v1/files/${encodeURIComponent('media/gone.png')}`);
    expect(deleted.status).toBe(200);
    await waitFor('the delete’s delivery dropped', async () =>
      sandbox.faults.deliveries.counts.drop >= 1 ? true : undefined,
    );
    sandbox.faults.deliveries.set({});
    expect(await replicaHolds(`${KEY_PREFIX}media/gone.png`)).toBe(true);

    // Someone's object, written straight into the bucket under the mirror's prefix.
    await stack.s3For(bucket()).send(
      new PutObjectCommand({
        Bucket: bucket(),
        Key: `${KEY_PREFIX}media/stray one+1.bin`,
        Body: 'not ours',
      }),
    );

    const first = await reconcile();
    expect(first.foreign[TARGET]).toEqual({
      listed: 3,
      foreign: 2,
      deleted: 1,
      complete: true,
      sample: [
        { key: `${KEY_PREFIX}media/gone.png`, path: 'media/gone.png', reason: 'deleted' },
        { key: `${KEY_PREFIX}media/stray one+1.bin`, path: 'media/stray one+1.bin', reason: 'unknown' },
      ],
    });

    await waitFor('the deleted file gone from the replica', async () =>
      (await replicaHolds(`${KEY_PREFIX}media/gone.png`)) ? undefined : true,
    );
    expect(await replicaHolds(`${KEY_PREFIX}media/stray one+1.bin`)).toBe(true);
    expect(await replicaHolds(`${KEY_PREFIX}media/kept.png`)).toBe(true);

    const again = await reconcile();
    expect(again.foreign[TARGET]).toMatchObject({
      listed: 2,
      foreign: 1,
      deleted: 0,
      sample: [{ key: `${KEY_PREFIX}media/stray one+1.bin`, reason: 'unknown' }],
    });

    const text = await stack.cli('reconcile', '--target', TARGET);
    expect(text.out).toContain(
      `${TARGET}: ${KEY_PREFIX}media/stray one+1.bin (unknown to the mirror: left alone)`,
    );
  });

  it('HEADs no replica object of a path the mirror deleted: the listing weighs those (cost stays with the live files)', async () => {
    await upload('media/live-1.png');
    await recorded('media/live-1.png');
    const deleted = ['media/old-1.png', 'media/old-2.png', 'media/old-3.png'];
    for (const path of deleted) {
      await upload(path);
      await recorded(path);
      const gone = await api('DELETE', `/v1/files/${encodeURIComponent(path)}`);
      expect(gone.status).toBe(200);
      await recorded(path, gone.body.version);
    }

    const run = await reconcile();
    expect(run.foreign[TARGET]).toMatchObject({ deleted: 0, complete: true });
    expect(run.targets[TARGET]).toEqual({ resent: 0, missing: 0, altered: 0 });
    const heads = (await sandbox.observedCalls())
      .filter((c) => c.caller === CLI_APP_ID && c.resource.startsWith(`s3:${bucket()}/`))
      .map((c) => c.resource.slice(`s3:${bucket()}/`.length));
    // Every live file the target holds is checked: the deleted ones are not.
    expect(heads).toContain(`${KEY_PREFIX}media/live-1.png`);
    for (const path of deleted) expect(heads).not.toContain(`${KEY_PREFIX}${path}`);
  });
});
