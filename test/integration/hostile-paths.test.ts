/**
 * Hostile input at the door and on the target queues, against the emulators with the real
 * handlers: the path policy refuses what some target could not hold (400, field `path`, the
 * rule) and writes nothing; both path forms address one file on every route; replicate applies
 * only what the ledger holds; a fan-out that failed after the commit is sent again from the
 * feed (the outbox) and every target converges.
 */
import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  SQSBatchResponse,
  SQSEvent,
  SQSRecord,
} from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicationMessage } from '../../contracts/replication-message.ts';
import { commitVersion } from '../../functions/core/commit.js';
import { ingestBlob } from '../../functions/core/ingest.js';
import { measureLag, OUTBOX_GRACE_MS } from '../../functions/core/lag.js';
import type { Clock, FanoutQueue } from '../../functions/core/ports.js';
import { createIngestHandler } from '../../functions/handlers/ingest-handler.js';
import { createReplicateHandler } from '../../functions/handlers/replicate-handler.js';
import { httpEvent, lambdaContext } from '../support/api-events.js';
import { makeWorld, sha256Hex, testTelemetry, type World, worldApi } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';
import { claimPendingUpload } from '../support/in-memory-core.js';
import { indexBehind } from '../support/index-behind.ts';
import { fifoRecord } from '../support/sqs-events.js';

let emulators: TestEmulators;
let world: World;
let table: string;
let api: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;
let replicate: (event: SQSEvent) => Promise<SQSBatchResponse>;
let ingest: (event: SQSEvent) => Promise<SQSBatchResponse>;

beforeAll(async () => {
  emulators = await startEmulators();
  world = await makeWorld(emulators);
  table = world.table;
  const apiHandler = worldApi(world, {
    limits: { contentTypes: ['image/*', 'text/plain', 'application/octet-stream'] },
  });
  api = (event) => apiHandler(event, lambdaContext('api'));
  const alpha = world.targets.find((t) => t.id === 'alpha');
  if (!alpha) throw new Error('the world has a target alpha');
  const replicateHandler = createReplicateHandler({
    target: { ...alpha, keyPrefix: '' },
    ledger: world.ledger,
    replica: world.replica('alpha'),
    clock: world.deps.clock,
    telemetry: testTelemetry(),
  });
  replicate = (event) => replicateHandler(event, lambdaContext('replicate-alpha'));
  const ingestHandler = createIngestHandler({ ...world.deps, telemetry: testTelemetry() });
  ingest = (event) => ingestHandler(event, lambdaContext('ingest'));
});
afterAll(async () => {
  await emulators?.stop();
});

/** Everything a rejection must leave as it was. */
async function snapshot() {
  const items = await emulators.dynamo.send(new ScanCommand({ TableName: table }));
  const keys = async (bucket: string | undefined) =>
    ((await emulators.s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? [])
      .map((o) => `${o.Key}@${o.ETag}`)
      .sort();
  return {
    items: (items.Items ?? []).map((i) => `${i.pk?.S}|${i.sk?.S}`).sort(),
    origin: await keys(world.originBucket),
    alpha: await keys(world.targets[0]?.bucket),
    beta: await keys(world.targets[1]?.bucket),
  };
}

const json = (result: APIGatewayProxyStructuredResultV2) => JSON.parse(String(result.body ?? '{}'));

/** Declares a text file at `path` (POST /v1/uploads). */
function claimText(path: string, bytes: Buffer) {
  return api(
    httpEvent('POST', '/v1/uploads', {
      body: { path, size: bytes.length, sha256: sha256Hex(bytes), contentType: 'text/plain' },
    }),
  );
}

/** PUTs the bytes to the claim's URL and ingests S3's event of them (with `deps`): the PUT's answer. */
async function sendAndIngest(created: Awaited<ReturnType<typeof api>>, bytes: Buffer, deps = world.deps) {
  const { url, headers } = json(created).upload as { url: string; headers: Record<string, string> };
  const { 'content-length': _length, ...rest } = headers;
  const put = await fetch(url, { method: 'PUT', headers: rest, body: new Uint8Array(bytes) });
  await ingestBlob(deps, {
    key: `blobs/${sha256Hex(bytes)}`,
    size: bytes.length,
    etag: put.headers.get('etag')?.replaceAll('"', ''),
    versionId: put.headers.get('x-amz-version-id') ?? undefined,
  });
  return put;
}

/** Declares, PUTs and ingests a file the way a client and S3's event would. */
async function upload(path: string, text = `bytes of ${path} ${randomUUID()}`) {
  const bytes = Buffer.from(text);
  const created = await claimText(path, bytes);
  expect(created.statusCode, String(created.body)).toBe(201);
  const put = await sendAndIngest(created, bytes);
  expect(put.status).toBe(200);
  const head = await world.ledger.getHead(path);
  expect(head?.sha256).toBe(sha256Hex(bytes));
  return { bytes, version: head?.version as number };
}

const claim = (path: unknown) =>
  api(
    httpEvent('POST', '/v1/uploads', {
      body: { path, size: 5, sha256: sha256Hex(`claim ${String(path)}`), contentType: 'text/plain' },
    }),
  );

describe('the path policy at the door: 400, field path, the rule, nothing written', () => {
  const refused: [string, unknown, RegExp][] = [
    ['U+FFFE (SQS cannot carry it)', 'media/a\uFFFE.jpg', /U\+FFFE/],
    ['U+FFFF (SQS cannot carry it)', 'media/\uFFFF', /U\+FFFF/],
    ['a name over 255 bytes (a pull target cannot hold it)', `media/${'é'.repeat(128)}.jpg`, /255 bytes/],
    ["the agent's state folder", '.media-mirror/state.json', /agent's state/],
    ["the agent's temp-file names", 'media/.photo.jpg.mirror-tmp-1a2b', /temp-file/],
    ['a file named "versions" in a folder', 'media/versions', /sub-resource/],
    ['a file named "content" in a folder', 'media/2026/content', /sub-resource/],
    ['a ".." segment', 'media/../../etc/passwd', /"\." or "\.\."/],
    ['a "." segment', 'media/./a.jpg', /"\." or "\.\."/],
    ['an absolute path', '/etc/passwd', /relative/],
    ['an empty segment', 'media//a.jpg', /empty segments/],
    ['a trailing slash', 'media/', /empty segments/],
    ['a backslash', 'media\\a.jpg', /backslash/],
    [
      'a "%" (an HTTP API decodes the URL path: a second decoding reads another name)',
      'media/50% off.jpg',
      /"%", "\?" or "#"/,
    ],
    ['a "?" (a decoded "?" cuts the URL path short)', 'media/why?.jpg', /"%", "\?" or "#"/],
    ['a "#"', 'media/track #1.mp3', /"%", "\?" or "#"/],
    ['a control character', 'media/a\u0007.jpg', /control/],
    ['a lone surrogate', 'media/\uD800.jpg', /surrogate/],
    ['over 1024 bytes', `m/${'a'.repeat(1100)}`, /at most/],
    [
      'more than 45 folders deep (a pull target takes it: each folder is checked in the commit)',
      `${'d/'.repeat(46)}a.txt`,
      /at most 45 folders deep/,
    ],
    ['not a string', 42, /string/],
    ['empty', '', /empty/],
  ];
  it.each(refused)('refuses %s', async (_name, path, rule) => {
    const before = await snapshot();
    const result = await claim(path);
    expect(result.statusCode).toBe(400);
    const error = json(result).error;
    expect(error.field).toBe('path');
    expect(error.message).toMatch(rule);
    expect(await snapshot()).toEqual(before);
  });

  it('a file 45 folders deep is admitted, committed and its folders count it (a file at its deepest folder is refused)', async () => {
    const deepest = Array.from({ length: 45 }, (_, i) => `f${i}`).join('/');
    await upload(`${deepest}/a.txt`);
    const result = await claim(deepest);
    expect(result.statusCode).toBe(400);
    expect(json(result).error).toMatchObject({ code: 'path_conflict', field: 'path' });
  });

  it('a file where a folder of live files is, or a file under a live file, is refused (path_conflict); after a delete it is admitted', async () => {
    await upload('clash/a');
    await upload('clash2/x/y.txt');
    for (const path of ['clash/a/b.txt', 'clash/a/b/c.txt', 'clash2/x', 'clash2']) {
      const before = await snapshot();
      const result = await claim(path);
      expect(result.statusCode, path).toBe(400);
      expect(json(result).error).toMatchObject({ code: 'path_conflict', field: 'path' });
      expect(await snapshot()).toEqual(before);
    }
    const deleted = await api(httpEvent('DELETE', '/v1/files/clash/a'));
    expect(deleted.statusCode).toBe(200);
    expect((await claim('clash/a/b.txt')).statusCode).toBe(201);
  });

  it('the ingest refuses a claim whose folder became a file while its bytes were on the way', async () => {
    const bytes = Buffer.from(`late ${randomUUID()}`);
    const created = await claimText('race/dir/file.txt', bytes);
    expect(created.statusCode).toBe(201);
    await upload('race/dir'); // another client takes the folder's name as a file meanwhile
    await sendAndIngest(created, bytes);
    expect(await world.ledger.getHead('race/dir/file.txt')).toBeUndefined();
    const state = json(await api(httpEvent('GET', `/v1/uploads/${json(created).uploadId}`)));
    expect(state.status).toBe('rejected');
    expect(state.reason).toMatch(/path_conflict/);
  });

  it('the reverse, with the live-files index a moment behind (as on AWS): a file committed under the folder refuses the folder as a file in the commit itself (probe 9, F1)', async () => {
    const bytes = Buffer.from(`folder as file ${randomUUID()}`);
    const created = await claimText('lagging/dir', bytes);
    expect(created.statusCode).toBe(201);
    await upload('lagging/dir/file.txt'); // another client's file under it commits meanwhile
    // The index has not caught up with that file yet: only the commit's own write can see it.
    await sendAndIngest(created, bytes, { ...world.deps, ledger: indexBehind(world.ledger) });
    expect(await world.ledger.getHead('lagging/dir')).toBeUndefined();
    const state = json(await api(httpEvent('GET', `/v1/uploads/${json(created).uploadId}`)));
    expect(state).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/^path_conflict: path is a folder of other files/),
    });
    // Once the file under it is deleted, the name is free for a file.
    expect(
      (await api(httpEvent('DELETE', `/v1/files/${encodeURIComponent('lagging/dir/file.txt')}`))).statusCode,
    ).toBe(200);
    await upload('lagging/dir');
  });
});

describe('nested paths in URLs: literal slashes and %2F address the same file on every route', () => {
  const names = ['urls/a b.jpg', 'urls/p+s.jpg', 'urls/a&b=c;d.jpg', 'urls/x/y/z.jpg', 'urls/é/ü.txt'];
  const literal = (path: string) => path.split('/').map(encodeURIComponent).join('/');
  const encoded = (path: string) => encodeURIComponent(path);

  it.each(names)('GET, versions, content and DELETE of "%s" in both forms', async (path) => {
    const { version } = await upload(path);
    for (const form of [literal(path), encoded(path)]) {
      const file = await api(httpEvent('GET', `/v1/files/${form}`));
      expect(file.statusCode, form).toBe(200);
      expect(json(file).path).toBe(path);
      expect(json(file).head.version).toBe(version);
      const versions = await api(httpEvent('GET', `/v1/files/${form}/versions`));
      expect(versions.statusCode, form).toBe(200);
      expect(json(versions).versions[0].version).toBe(version);
      const content = await api(httpEvent('GET', `/v1/files/${form}/content`));
      expect(content.statusCode, form).toBe(302);
    }
    const removed = await api(httpEvent('DELETE', `/v1/files/${literal(path)}`));
    expect(removed.statusCode).toBe(200);
    expect(json(removed)).toMatchObject({ path, deleted: true, version: version + 1 });
    const gone = await api(httpEvent('GET', `/v1/files/${encoded(path)}/content`));
    expect(gone.statusCode).toBe(404);
  });

  it('a file committed under a name with %, ? or # before new paths refused them is still read, listed, replicated and deleted', async () => {
    const path = 'legacy/Track #1 at 50% (why?).txt';
    const bytes = Buffer.from(`legacy ${randomUUID()}`);
    // Written as an older deployment admitted it: claimed in the ledger, its bytes PUT, ingested.
    await claimPendingUpload(world.ledger, path, bytes, { contentType: 'text/plain' });
    const put = await emulators.s3.send(
      new PutObjectCommand({ Bucket: world.originBucket, Key: `blobs/${sha256Hex(bytes)}`, Body: bytes }),
    );
    await ingestBlob(world.deps, {
      key: `blobs/${sha256Hex(bytes)}`,
      size: bytes.length,
      etag: put.ETag?.replaceAll('"', ''),
      versionId: put.VersionId,
    });
    expect((await world.ledger.getHead(path))?.version).toBe(1);
    expect((await claim(path)).statusCode).toBe(400);
    const encoded = encodeURIComponent(path);
    expect(json(await api(httpEvent('GET', `/v1/files/${encoded}`))).path).toBe(path);
    expect((await api(httpEvent('GET', `/v1/files/${encoded}/content`))).statusCode).toBe(302);
    const listed = json(await api(httpEvent('GET', '/v1/files', { query: { prefix: 'legacy/' } })));
    expect(listed.files.map((f: { path: string }) => f.path)).toContain(path);
    const replicated = await deliver({ path, version: 1, sha256: sha256Hex(bytes), size: bytes.length });
    expect(replicated.batchItemFailures).toEqual([]);
    expect((await alphaObject(path))?.body).toBe(bytes.toString());
    const removed = await api(httpEvent('DELETE', `/v1/files/${encoded}`));
    expect(json(removed)).toMatchObject({ path, deleted: true, version: 2 });
  });

  it('a gateway that decoded %2F (rawPath with literal slashes) reaches the same file', async () => {
    await upload('decoded/by/gateway.txt');
    const result = await api(httpEvent('GET', '/v1/files/decoded/by/gateway.txt'));
    expect(result.statusCode).toBe(200);
    expect(json(result).path).toBe('decoded/by/gateway.txt');
  });

  it('a gateway that decoded the whole path (an HTTP API, by public captures) reaches the same file on every route', async () => {
    const path = 'decoded/été photo+1 & 2 (final).jpg';
    const { version } = await upload(path);
    for (const [route, status] of [
      ['', 200],
      ['/versions', 200],
      ['/content', 302],
    ] as const) {
      const result = await api(httpEvent('GET', `/v1/files/${path}${route}`));
      expect(result.statusCode, route).toBe(status);
      if (status === 200) expect(json(result).path).toBe(path);
    }
    const removed = await api(httpEvent('DELETE', `/v1/files/${path}`));
    expect(json(removed)).toMatchObject({ path, deleted: true, version: version + 1 });
  });
});

function sqsRecord(body: string, path: string): SQSRecord {
  return fifoRecord(body, sha256Hex(path), { messageId: randomUUID(), dedupId: randomUUID() });
}

const deliver = (message: Partial<ReplicationMessage> & { path: string }) =>
  replicate({
    Records: [
      sqsRecord(
        JSON.stringify({
          targetId: 'alpha',
          version: 1,
          sha256: sha256Hex('forged'),
          size: 6,
          contentType: 'text/plain',
          deleted: false,
          committedAt: new Date().toISOString(),
          ...message,
        }),
        message.path,
      ),
    ],
  });

const alphaObject = async (key: string) => {
  try {
    const out = await emulators.s3.send(new GetObjectCommand({ Bucket: world.targets[0]?.bucket, Key: key }));
    return { body: await out.Body?.transformToString(), metadata: out.Metadata };
  } catch {
    return undefined;
  }
};

describe('replicate: a message is a hint, the ledger is the truth', () => {
  it('a message for a path the ledger never had writes nothing', async () => {
    const before = await snapshot();
    expect((await deliver({ path: 'forged/never.txt' })).batchItemFailures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it('a forged delete at version 999 neither deletes the replica nor freezes the path', async () => {
    const { bytes } = await upload('forged/kept.txt');
    expect((await deliver({ path: 'forged/kept.txt', version: 1 })).batchItemFailures).toEqual([]);
    expect((await alphaObject('forged/kept.txt'))?.body).toBe(bytes.toString());
    const before = await snapshot();
    await deliver({ path: 'forged/kept.txt', version: 999, deleted: true, sha256: null, size: 0 });
    expect(await snapshot()).toEqual(before);
    expect((await world.ledger.getTargetState('forged/kept.txt', 'alpha'))?.appliedVersion).toBe(1);
    const next = await upload('forged/kept.txt', 'version two');
    await deliver({ path: 'forged/kept.txt', version: next.version });
    expect((await alphaObject('forged/kept.txt'))?.body).toBe('version two');
  });

  it('a message whose path climbs out ("../") writes nothing, anywhere', async () => {
    const before = await snapshot();
    for (const path of ['../escape.txt', 'a/../../escape.txt', '/abs.txt', 'a\\..\\b.txt'])
      expect((await deliver({ path })).batchItemFailures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it('a message for another target is refused by this one', async () => {
    await upload('forged/other.txt');
    const before = await snapshot();
    await deliver({ path: 'forged/other.txt', targetId: 'beta' });
    expect(await snapshot()).toEqual(before);
  });

  it("the message's content is ignored: the ledger's bytes, size and type are applied", async () => {
    const { bytes, version } = await upload('forged/content.txt');
    await deliver({
      path: 'forged/content.txt',
      version,
      sha256: sha256Hex('other'),
      size: 5,
      deleted: true,
    });
    const object = await alphaObject('forged/content.txt');
    expect(object?.body).toBe(bytes.toString());
    expect(object?.metadata?.['mirror-sha256']).toBe(sha256Hex(bytes));
  });

  it('a replica object whose version metadata was edited to a huge number is repaired, not obeyed', async () => {
    await upload('forged/meta.txt', 'one');
    await deliver({ path: 'forged/meta.txt', version: 1 });
    await emulators.s3.send(
      new PutObjectCommand({
        Bucket: world.targets[0]?.bucket,
        Key: 'forged/meta.txt',
        Body: 'tampered',
        Metadata: { 'mirror-version': '999999', 'mirror-sha256': sha256Hex('tampered') },
      }),
    );
    const two = await upload('forged/meta.txt', 'two');
    await deliver({ path: 'forged/meta.txt', version: two.version });
    expect((await alphaObject('forged/meta.txt'))?.body).toBe('two');
    expect((await world.ledger.getTargetState('forged/meta.txt', 'alpha'))?.appliedVersion).toBe(2);
  });

  it('a body that is not a replication message fails its record (retried, then parked in the DLQ)', async () => {
    const before = await snapshot();
    const record = sqsRecord('{"path": 42', 'x');
    const valid = {
      targetId: 'alpha',
      path: 'forged/none.txt',
      version: 1,
      sha256: null,
      size: 0,
      contentType: null,
      deleted: true,
      committedAt: new Date().toISOString(),
    };
    const other = sqsRecord(JSON.stringify(valid), valid.path);
    const out = await replicate({ Records: [record, other] });
    // Only the bad record fails (the other group goes on): it returns to the queue, then its DLQ.
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: record.messageId }]);
    expect(await snapshot()).toEqual(before);
  });
});

describe('the fan-out outbox: a version is never visible without its fan-out', () => {
  it('a send that fails after the commit is re-sent by the lag monitor, and every target converges', async () => {
    let now = new Date();
    const clock: Clock = { now: () => now };
    const failing: FanoutQueue = {
      send: async () => {
        throw new Error('SQS unavailable');
      },
    };
    const bytes = Buffer.from(`outbox ${randomUUID()}`);
    const { version: seed } = await upload('public/outbox.txt', bytes.toString());
    // Drain what the first commit sent, so the queues hold only what the outbox sends.
    for (const target of world.targets) await received(target.queueUrl);
    await expect(
      commitVersion(
        { ...world.deps, clock, fanout: failing },
        {
          uploadId: randomUUID(),
          path: 'public/outbox.txt',
          sha256: sha256Hex(bytes),
          size: bytes.length,
          contentType: 'text/plain',
          deleted: false,
        },
      ),
    ).rejects.toThrow('SQS unavailable');
    expect((await world.ledger.getHead('public/outbox.txt'))?.version).toBe(seed + 1);
    const lagDeps = { ...world.deps, clock, fanout: world.deps.fanout };
    // Within the grace the commit may still be sending: nothing is re-sent yet.
    await measureLag(lagDeps);
    for (const target of world.targets) expect(await received(target.queueUrl)).toEqual([]);
    now = new Date(now.getTime() + OUTBOX_GRACE_MS + 1_000);
    await measureLag(lagDeps);
    for (const target of world.targets)
      expect(await received(target.queueUrl), target.id).toEqual([`public/outbox.txt@${seed + 1}`]);
    // Marked: the next run sends nothing again.
    await measureLag(lagDeps);
    for (const target of world.targets) expect(await received(target.queueUrl)).toEqual([]);
    await deliver({ path: 'public/outbox.txt', version: seed + 1 });
    expect((await world.ledger.getTargetState('public/outbox.txt', 'alpha'))?.appliedVersion).toBe(seed + 1);
  });
});

/** The `path@version` of each message waiting in a queue (deleted as read). */
async function received(queueUrl: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const page = await emulators.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    if (!page.Messages?.length) return out;
    for (const m of page.Messages) {
      const body = JSON.parse(m.Body ?? '{}') as ReplicationMessage;
      out.push(`${body.path}@${body.version}`);
      await emulators.sqs.send(
        new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }
  }
}

/** An S3 event notification as SQS delivers it to the ingest (AWS's documented structure, abridged). */
function s3Event(records: { key: string; size?: number; eTag?: string; eventName?: string }[]): string {
  return JSON.stringify({
    Records: records.map((r) => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: new Date().toISOString(),
      eventName: r.eventName ?? 'ObjectCreated:Put',
      s3: {
        s3SchemaVersion: '1.0',
        bucket: { name: world.originBucket, arn: `arn:aws:s3:::${world.originBucket}` },
        object: { key: r.key, size: r.size ?? 5, eTag: r.eTag ?? 'd41d8cd98f00b204e9800998ecf8427e' },
      },
    })),
  });
}

describe('hostile S3 events at the ingest: nothing unverified is committed, nothing else changes', () => {
  const ingestBody = async (body: string) => {
    const record = sqsRecord(body, 'ingest');
    const valid = sqsRecord(s3Event([{ key: 'not-a-blob.txt' }]), 'ingest');
    return { record, out: await ingest({ Records: [record, valid] }) };
  };
  const unknown = sha256Hex(`never stored ${randomUUID()}`);
  const ignored: [string, () => string][] = [
    ['a key outside blobs/', () => s3Event([{ key: 'uploads/evil.jpg' }])],
    ['a key that is not a SHA-256', () => s3Event([{ key: 'blobs/not-a-hash' }])],
    ['a key that climbs ("blobs/<sha>/../x")', () => s3Event([{ key: `blobs/${unknown}/../${unknown}` }])],
    ['a blob that was never stored', () => s3Event([{ key: `blobs/${unknown}`, size: 1 }])],
    ['a removal event', () => s3Event([{ key: `blobs/${unknown}`, eventName: 'ObjectRemoved:Delete' }])],
    ["S3's test event", () => JSON.stringify({ Event: 's3:TestEvent', Service: 'Amazon S3' })],
  ];
  it.each(ignored)('ignores %s', async (_name, body) => {
    const before = await snapshot();
    const { out } = await ingestBody(body());
    expect(out.batchItemFailures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  const malformed: [string, string][] = [
    ['a body that is not JSON', '{"Records": ['],
    ['JSON that is not an S3 notification', JSON.stringify({ Records: [{ eventName: 42 }] })],
  ];
  it.each(malformed)('fails (retries, then parks in the DLQ) %s and changes nothing', async (_name, body) => {
    const before = await snapshot();
    const { record, out } = await ingestBody(body);
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: record.messageId }]);
    expect(await snapshot()).toEqual(before);
  });

  it('bytes that do not hash to their key are rejected whatever size and ETag the event claims, and the stack still works', async () => {
    const bytes = Buffer.from(`claimed ${randomUUID()}`);
    const claimed = sha256Hex(bytes);
    const created = await api(
      httpEvent('POST', '/v1/uploads', {
        body: { path: 'evil/liar.txt', size: bytes.length, sha256: claimed, contentType: 'text/plain' },
      }),
    );
    expect(created.statusCode).toBe(201);
    // Other bytes of the same length land at the claimed key (a client ignoring the signed checksum).
    const other = Buffer.alloc(bytes.length, 0x41);
    const put = await emulators.s3.send(
      new PutObjectCommand({ Bucket: world.originBucket, Key: `blobs/${claimed}`, Body: other }),
    );
    const { out } = await ingestBody(
      s3Event([{ key: `blobs/${claimed}`, size: bytes.length, eTag: put.ETag?.replaceAll('"', '') }]),
    );
    expect(out.batchItemFailures).toEqual([]);
    expect(await world.ledger.getHead('evil/liar.txt')).toBeUndefined();
    const state = json(await api(httpEvent('GET', `/v1/uploads/${json(created).uploadId}`)));
    expect(state.status).toBe('rejected');
    expect(state.reason).toMatch(/sha256 mismatch/);
    // The stack still works afterwards: a real upload commits.
    await upload('evil/after.txt');
  });
});

describe("deduplication: a claim by hash alone never rides on another client's bytes", () => {
  it('bytes PUT through one upload commit that upload only; a claim of the same hash stays pending', async () => {
    const secret = `secret ${randomUUID()}`;
    const bytes = Buffer.from(secret);
    // The attacker knows the hash, not the bytes: claims, sends no proof and no bytes.
    const claimed = await api(
      httpEvent('POST', '/v1/uploads', {
        body: {
          path: 'steal/mine.txt',
          size: bytes.length,
          sha256: sha256Hex(bytes),
          contentType: 'text/plain',
        },
      }),
    );
    expect(claimed.statusCode).toBe(201);
    // Two honest clients upload those bytes through their own URLs while the claim is open.
    await upload('victim/own.txt', secret);
    await upload('victim/again.txt', secret);
    expect(await world.ledger.getHead('steal/mine.txt')).toBeUndefined();
    const state = json(await api(httpEvent('GET', `/v1/uploads/${json(claimed).uploadId}`)));
    expect(state.status).toBe('pending');
    expect((await api(httpEvent('GET', '/v1/files/steal/mine.txt'))).statusCode).toBe(404);
  });
});
