/**
 * Delivery faults of the local stack (docs/chaos.md), each seen through the stack's public
 * interface: the HTTP API, the queues and the replica buckets.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../local/sandbox.js';
import { localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

let stack: TestStack;
let sandbox: Sandbox;
let s3For: TestStack['s3For'];
let sqs: SQSClient;
const enc = encodeURIComponent;

beforeAll(async () => {
  stack = await startTestStack('faults', {
    queues: { ingestVisibilityTimeout: 5, targetVisibilityTimeout: 5 },
    // The sweep runs when a test asks (sandbox.sweepPending), and takes a second-old object's event for lost.
    schedules: {
      lagIntervalSeconds: 0,
      reconcileIntervalSeconds: 0,
      reconcileAtStart: false,
      sweepIntervalSeconds: 0,
      sweepGraceSeconds: 1,
    },
    // Configured at start: every notification and every delivery is made twice.
    faults: { notifications: { duplicate: 1 }, deliveries: { duplicate: 1 } },
  });
  ({ sandbox, s3For } = stack);
  const e = sandbox.endpoints;
  sqs = new SQSClient({ region: e.s3.region, endpoint: e.sqs.endpoint, credentials: e.s3.credentials });
});
afterAll(async () => {
  sqs?.destroy();
  await stack?.stop();
});

const api = (method: string, path: string, body?: unknown) =>
  localApi(sandbox.endpoints).call(method, path, body);

async function upload(path: string, bytes: Buffer) {
  const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, 'image/png');
  expect(created.status).toBe(201);
  expect(putStatus).toBe(200);
  return created.body.uploadId as string;
}

const status = async (uploadId: string) =>
  (await api('GET', `/v1/uploads/${uploadId}`)).body.status as string;

async function replica(targetId: string, path: string): Promise<Buffer | undefined> {
  const bucket = sandbox.endpoints.targets[targetId]?.bucket as string;
  try {
    const out = await s3For(bucket).send(new GetObjectCommand({ Bucket: bucket, Key: path }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  } catch {
    return undefined;
  }
}

async function versionsOf(path: string): Promise<number[]> {
  const out = await api('GET', `/v1/files/${enc(path)}/versions`);
  return (out.body?.versions ?? [])
    .map((v: { version: number }) => v.version)
    .sort((a: number, b: number) => a - b);
}

const S3_TARGETS = ['eu-west-1', 'ap-south-1'];
const MiB = 1024 * 1024;

describe('delivery faults in the local stack', () => {
  it('every notification and delivery made twice (set at start) still yields one version, at every target', async () => {
    const bytes = Buffer.from(`twice ${Date.now()}`);
    const id = await upload('faults/twice.png', bytes);
    await waitFor('commit', async () => (await status(id)) === 'committed', 30_000);
    for (const t of S3_TARGETS)
      expect(
        (await waitFor(`replica ${t}`, () => replica(t, 'faults/twice.png'), 30_000)).equals(bytes),
      ).toBe(true);
    // The duplicates reached the functions: more ingest records than notifications sent once.
    const stats = sandbox.stats();
    expect(stats.ingest?.records).toBeGreaterThanOrEqual(4);
    expect(sandbox.faults.notifications.counts.duplicate).toBeGreaterThanOrEqual(1);
    expect(sandbox.faults.deliveries.counts.duplicate).toBeGreaterThanOrEqual(3);
    expect(await versionsOf('faults/twice.png')).toEqual([1]);
    sandbox.faults.notifications.set({});
    sandbox.faults.deliveries.set({});
  });

  it('a lost S3 notification leaves the upload pending until pending uploads are notified again', async () => {
    sandbox.faults.notifications.set({ drop: 1 });
    const bytes = Buffer.from(`lost notification ${Date.now()}`);
    const id = await upload('faults/lost-notification.png', bytes);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await status(id)).toBe('pending');
    expect(sandbox.faults.notifications.counts.drop).toBeGreaterThanOrEqual(1);
    sandbox.faults.notifications.set({});
    const report = await sandbox.renotifyPending();
    expect(report.renotified).toBeGreaterThanOrEqual(1);
    await waitFor('commit after re-notification', async () => (await status(id)) === 'committed', 30_000);
    expect(await versionsOf('faults/lost-notification.png')).toEqual([1]);
  });

  it('a lost S3 notification is found by the lost-notification sweep (the AWS function), which has the ingest commit it', async () => {
    sandbox.faults.notifications.set({ drop: 1 });
    const bytes = Buffer.from(`swept ${Date.now()}`);
    const id = await upload('faults/swept.png', bytes);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await status(id)).toBe('pending');
    // Faults stay on: the sweep sends to the ingest queue itself, as on AWS (no S3 notification).
    const report = await sandbox.sweepPending();
    expect(report.sent).toBeGreaterThanOrEqual(1);
    await waitFor('commit after the sweep', async () => (await status(id)) === 'committed', 30_000);
    expect(await versionsOf('faults/swept.png')).toEqual([1]);
    // Counted: /metrics serves the sweep's LostNotificationsResent.
    const metrics = await (await fetch(sandbox.endpoints.metrics)).text();
    const resent = /^mirror_lost_notifications_resent_total (\d+)/m.exec(metrics)?.[1];
    expect(Number(resent)).toBeGreaterThanOrEqual(1);
    sandbox.faults.notifications.set({});
    // Nothing is left for the next run to send for it.
    expect((await sandbox.sweepPending()).sent).toBe(0);
  });

  it('a lost multipart completion (its message dropped) is sent again by the sweep, and the upload commits', async () => {
    sandbox.faults.notifications.set({});
    sandbox.faults.deliveries.set({ drop: 1, only: ['complete-multipart'] });
    const bytes = randomBytes(17 * MiB + 11);
    const created = await api('POST', '/v1/uploads', {
      path: 'faults/lost-completion.bin',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
    });
    expect(created.status).toBe(201);
    const id = created.body.uploadId as string;
    const { partSize, partCount } = created.body.multipart as { partSize: number; partCount: number };
    const parts = Array.from({ length: partCount }, (_, i) =>
      bytes.subarray(i * partSize, Math.min(bytes.length, (i + 1) * partSize)),
    );
    const asked = parts.map((part, i) => ({ partNumber: i + 1, size: part.length, sha256: sha256Hex(part) }));
    const signed = await api('POST', `/v1/uploads/${id}/parts`, { parts: asked });
    const reports = [];
    for (const [i, s] of (
      signed.body.parts as { url: string; headers: Record<string, string> }[]
    ).entries()) {
      const put = await fetch(s.url, {
        method: 'PUT',
        headers: s.headers,
        body: new Uint8Array(parts[i] as Buffer),
      });
      expect(put.status).toBe(200);
      reports.push({ ...asked[i], etag: put.headers.get('etag') });
    }
    expect((await api('PUT', `/v1/uploads/${id}/parts`, { parts: reports })).status).toBe(200);
    const dropped = sandbox.faults.deliveries.counts.drop;
    expect((await api('POST', `/v1/uploads/${id}/complete`)).status).toBe(202);
    await waitFor(
      'the completion dropped',
      async () => sandbox.faults.deliveries.counts.drop > dropped,
      10_000,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    // Nothing completed it: no object, no event, still pending.
    const pending = await api('GET', `/v1/uploads/${id}`);
    expect(pending.body).toMatchObject({ status: 'pending' });
    sandbox.faults.deliveries.set({});
    const report = await sandbox.sweepPending();
    expect(report.completionsResent).toBeGreaterThanOrEqual(1);
    await waitFor(
      'commit after the resent completion',
      async () => (await status(id)) === 'committed',
      60_000,
    );
    expect(await versionsOf('faults/lost-completion.bin')).toEqual([1]);
    const metrics = await (await fetch(sandbox.endpoints.metrics)).text();
    const resent = /^mirror_lost_completions_resent_total (\d+)/m.exec(metrics)?.[1];
    expect(Number(resent)).toBeGreaterThanOrEqual(1);
    // Committed: nothing left to resend.
    expect((await sandbox.sweepPending()).completionsResent).toBe(0);
  });

  it('lost notifications of two uploads that PUT the same bytes: re-notification commits both (each object version named)', async () => {
    sandbox.faults.notifications.set({ drop: 1 });
    const bytes = Buffer.from(`same bytes twice ${Date.now()}`);
    const first = await upload('faults/same-1.png', bytes);
    const second = await upload('faults/same-2.png', bytes);
    sandbox.faults.notifications.set({});
    await sandbox.renotifyPending();
    await waitFor(
      'both commits',
      async () => (await status(first)) === 'committed' && (await status(second)) === 'committed',
      30_000,
    );
  });

  it('a delivery lost on the way to one target is repaired by reconcile; the other target is unaffected', async () => {
    sandbox.faults.deliveries.set({ drop: 1, only: ['replicate-eu-west-1'] });
    const bytes = Buffer.from(`lost delivery ${Date.now()}`);
    const id = await upload('faults/lost-delivery.png', bytes);
    await waitFor('commit', async () => (await status(id)) === 'committed', 30_000);
    expect(
      (
        await waitFor('ap-south-1 replica', () => replica('ap-south-1', 'faults/lost-delivery.png'), 30_000)
      ).equals(bytes),
    ).toBe(true);
    await waitFor('the drop', () => sandbox.faults.deliveries.counts.drop >= 1, 15_000);
    expect(await replica('eu-west-1', 'faults/lost-delivery.png')).toBeUndefined();
    sandbox.faults.deliveries.set({});
    const report = await sandbox.reconcile({ targetIds: ['eu-west-1'] });
    expect(report.targets['eu-west-1']?.resent).toBeGreaterThanOrEqual(1);
    expect(
      (
        await waitFor(
          'eu-west-1 replica after reconcile',
          () => replica('eu-west-1', 'faults/lost-delivery.png'),
          30_000,
        )
      ).equals(bytes),
    ).toBe(true);
  });

  it('late and reordered deliveries: versions stay gap-free and every target ends at the head', async () => {
    sandbox.faults.notifications.set({ reorder: 0.5, delay: 0.5, maxDelayMs: 800 });
    sandbox.faults.deliveries.set({ reorder: 0.5, delay: 0.5, maxDelayMs: 800 });
    const path = 'faults/reordered.png';
    const sent: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const bytes = Buffer.from(`reordered ${i} ${Date.now()}`);
      sent.push(bytes);
      await upload(path, bytes);
    }
    await waitFor(
      'five versions',
      async () => ((await versionsOf(path)).length === 5 ? true : undefined),
      60_000,
    );
    expect(await versionsOf(path)).toEqual([1, 2, 3, 4, 5]);
    const head = (await api('GET', `/v1/files/${enc(path)}`)).body.head as {
      version: number;
      sha256: string;
    };
    for (const t of S3_TARGETS) {
      await waitFor(
        `${t} at the head`,
        async () => {
          const bytes = await replica(t, path);
          return bytes !== undefined && sha256Hex(bytes) === head.sha256;
        },
        60_000,
      );
    }
    const faults = [sandbox.faults.notifications.counts, sandbox.faults.deliveries.counts];
    expect(faults.reduce((n, c) => n + c.reorder, 0)).toBeGreaterThan(0);
    expect(faults.reduce((n, c) => n + c.delay, 0)).toBeGreaterThan(0);
    sandbox.faults.notifications.set({});
    sandbox.faults.deliveries.set({});
  });

  it('restarting SQS loses what was queued; the queues come back and the pipeline runs on', async () => {
    const dlq = sandbox.endpoints.ingest.dlq;
    await sqs.send(new SendMessageCommand({ QueueUrl: dlq, MessageBody: '{"parked":true}' }));
    await sandbox.restartSqs();
    const after = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq, WaitTimeSeconds: 0 }));
    expect(after.Messages ?? []).toHaveLength(0);
    const bytes = Buffer.from(`after restart ${Date.now()}`);
    const id = await upload('faults/after-restart.png', bytes);
    await waitFor('commit after the restart', async () => (await status(id)) === 'committed', 30_000);
    for (const t of S3_TARGETS)
      expect(
        (await waitFor(`replica ${t}`, () => replica(t, 'faults/after-restart.png'), 30_000)).equals(bytes),
      ).toBe(true);
  });
});
