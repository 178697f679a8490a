/**
 * One write must not destroy verified content (issue 8, item 4). Through the local stack:
 * a file is committed and delivered everywhere, then other bytes are written straight
 * over its blob in the origin bucket. The ingest deletes only that object version; the
 * content URL, every replica, the on-prem agent's folder and every later copy still
 * serve the verified bytes, and the rejection is counted.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPartSender } from '../../cli/multipart.js';
import { createPutFile } from '../../cli/put-file.js';
import { systemClock, uploadFile } from '../../cli/upload.js';
import type { Sandbox } from '../../local/sandbox.js';
import { MirrorApi } from '../../web/client/api.js';
import { localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { type BucketClients, bucketClients } from '../support/regional-s3.ts';
import { waitFor as waitForShort } from '../support/wait.js';

let stack: TestStack;
let sandbox: Sandbox;
let s3: S3Client;
let s3For: BucketClients;
/** The ingest function's stdout: its log lines and its EMF metric lines. */
const ingestLines: string[] = [];
const enc = encodeURIComponent;
/** Cold functions on a machine shared with other suites: allow a minute, as other stack tests do. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false) =>
  waitForShort(what, probe, 60_000, 100);

beforeAll(async () => {
  stack = await startTestStack('verified-bytes', {
    functionLog: (name, line) => {
      if (name === 'ingest') ingestLines.push(line);
    },
    agents: { heartbeatSeconds: 1, waitTimeSeconds: 1, shutdownGraceSeconds: 2 },
  });
  sandbox = stack.sandbox;
  s3For = bucketClients(sandbox.endpoints, {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  s3 = s3For(sandbox.endpoints.originBucket);
});

afterAll(async () => {
  s3For?.destroy();
  await stack?.stop();
});

const api = (method: string, path: string, body?: unknown) =>
  localApi(sandbox.endpoints).call(method, path, body);

const s3Targets = () =>
  Object.entries(sandbox.endpoints.targets).flatMap(([id, t]) =>
    t.kind === 's3' && t.bucket ? [{ id, bucket: t.bucket, keyPrefix: t.keyPrefix ?? '' }] : [],
  );
const pullTargets = () =>
  Object.entries(sandbox.endpoints.targets).flatMap(([id, t]) => (t.kind === 'pull' ? [id] : []));

async function getBytes(bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const out = await s3For(bucket).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  } catch {
    return undefined;
  }
}

async function blobVersions(sha256: string) {
  const out = await s3.send(
    new ListObjectVersionsCommand({ Bucket: sandbox.endpoints.originBucket, Prefix: `blobs/${sha256}` }),
  );
  return {
    versions: (out.Versions ?? []).filter((v) => v.Key === `blobs/${sha256}`),
    markers: (out.DeleteMarkers ?? []).filter((m) => m.Key === `blobs/${sha256}`),
  };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(sandbox.endpoints.metrics)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** Waits until the path is committed and applied at every target that selects it (all do here). */
async function delivered(path: string, bytes: Buffer) {
  for (const target of s3Targets()) {
    const got = await waitFor(`${path} at ${target.id}`, async () => {
      const b = await getBytes(target.bucket, `${target.keyPrefix}${path}`);
      return b?.equals(bytes) ? b : undefined;
    });
    expect(got.equals(bytes)).toBe(true);
  }
  for (const id of pullTargets()) {
    const agent = sandbox.agents.get(id);
    expect(agent, `agent of ${id}`).toBeDefined();
    await waitFor(`${path} in ${id}'s folder`, async () => {
      const b = await readFile(join(agent?.dir as string, path)).catch(() => undefined);
      return b?.equals(bytes);
    });
  }
}

async function contentViaApi(path: string): Promise<{ bytes: Buffer; location: URL }> {
  const redirect = await api('GET', `/v1/files/${enc(path)}/content`);
  expect(redirect.status).toBe(302);
  const location = new URL(redirect.headers.get('location') as string);
  const response = await fetch(location);
  expect(response.status).toBe(200);
  return { bytes: Buffer.from(await response.arrayBuffer()), location };
}

describe('the content URL of the origin', () => {
  it('serves each version with its own content type, not that of whoever sent the shared bytes first', async () => {
    const bytes = Buffer.from(`shared bytes ${Date.now()}`);
    const local = localApi(sandbox.endpoints);
    for (const [path, type] of [
      ['typed/first.png', 'image/png'],
      ['typed/second.txt', 'text/plain'],
    ] as const) {
      const { created } = await local.declareAndPut(path, bytes, type);
      await waitFor(`${path} committed`, async () => {
        const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
        return u.body.status === 'committed';
      });
      const redirect = await api('GET', `/v1/files/${enc(path)}/content`);
      const response = await fetch(new URL(redirect.headers.get('location') as string));
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type'), path).toBe(type);
      expect(response.headers.get('content-disposition'), path).toBeNull();
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    }
  });

  it('serves a type a browser would run (SVG, HTML) as an attachment: opening the link runs no script', async () => {
    const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(${Date.now()})"/>`);
    const path = 'typed/active.svg';
    const { created } = await localApi(sandbox.endpoints).declareAndPut(path, svg, 'image/svg+xml');
    await waitFor(`${path} committed`, async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed';
    });
    for (const target of [undefined, s3Targets()[0]?.id]) {
      if (target !== undefined) await delivered(path, svg);
      const query = target === undefined ? '' : `?target=${target}`;
      const redirect = await api('GET', `/v1/files/${enc(path)}/content${query}`);
      const response = await fetch(new URL(redirect.headers.get('location') as string));
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type'), target).toBe('image/svg+xml');
      expect(response.headers.get('content-disposition'), target).toBe('attachment');
    }
  });
});

describe('headers a browser adds itself', () => {
  it('cache-control: no-cache (a fetch with cache "no-store", or the developer tools\' cache off) is taken: the bytes commit', async () => {
    const bytes = Buffer.from(`sent with no-cache ${Date.now()}`);
    const path = 'unsigned-headers/no-cache.bin';
    const local = localApi(sandbox.endpoints);
    const { created, putStatus } = await local.declareAndPut(path, bytes, 'application/octet-stream', {
      'cache-control': 'no-cache',
      pragma: 'no-cache',
    });
    expect(putStatus).toBe(200);
    await waitFor(`${path} committed`, async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed';
    });
    expect((await contentViaApi(path)).bytes.equals(bytes)).toBe(true);
  });

  it('cache-control: max-age=0 (a fetch with cache "no-cache") is taken too', async () => {
    const bytes = Buffer.from(`sent with max-age=0 ${Date.now()}`);
    const path = 'unsigned-headers/max-age-0.bin';
    const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(
      path,
      bytes,
      'application/octet-stream',
      { 'cache-control': 'max-age=0' },
    );
    expect(putStatus).toBe(200);
    await waitFor(`${path} committed`, async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed';
    });
  });
});

describe('the content URL of a target', () => {
  it('keeps the type it was handed out for: a later version applied there (an SVG) is never shown as its own type', async () => {
    const path = 'typed/target-later.txt';
    const target = s3Targets()[0];
    if (!target) throw new Error('the test topology has an S3 target');
    const note = Buffer.from(`a note ${Date.now()}`);
    const local = localApi(sandbox.endpoints);
    await local.declareAndPut(path, note, 'text/plain');
    await delivered(path, note);
    const minted = await api('GET', `/v1/files/${enc(path)}/content?target=${target.id}`);
    expect(minted.status).toBe(302);
    const link = new URL(minted.headers.get('location') as string);

    const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(${Date.now()})"/>`);
    await local.declareAndPut(path, svg, 'image/svg+xml');
    await delivered(path, svg);
    // The link handed out for the text/plain version, opened after the SVG replaced it there: a
    // browser is told text/plain, whatever the replica object now holds (probe 10, S2).
    const response = await fetch(link);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain');
    // A link handed out now is the SVG's, as an attachment.
    const fresh = await fetch(
      new URL(
        (await api('GET', `/v1/files/${enc(path)}/content?target=${target.id}`)).headers.get(
          'location',
        ) as string,
      ),
    );
    expect([fresh.headers.get('content-type'), fresh.headers.get('content-disposition')]).toEqual([
      'image/svg+xml',
      'attachment',
    ]);
  });
});

describe('headers the upload URL did not sign', () => {
  // S3 stores the representation headers a PUT sends (only x-amz-* ones must be signed) and serves
  // them with every GET: bytes stored gzip-encoded would reach every later copy of the same content
  // decoded, as other bytes than the ledger's SHA-256 (probe 10, S1).
  it.each([
    ['content-encoding', 'gzip'],
    ['content-disposition', 'attachment; filename="invoice.exe"'],
    // Served with every file that deduplicates onto the blob: caches keep another user's file for a
    // year, browsers read it in another language (probe api2, A2-5).
    ['cache-control', 'public, max-age=31536000, immutable'],
    ['expires', 'Thu, 01 Dec 2094 16:00:00 GMT'],
    ['content-language', 'xx-attacker'],
  ])(
    'stored with %s: rejected, nothing committed, the version deleted; the same bytes sent plainly then commit',
    async (name, value) => {
      const bytes = Buffer.from(`unsigned ${name} ${Date.now()} ${Math.random()}`);
      const sha256 = sha256Hex(bytes);
      const path = `unsigned-headers/${name}.bin`;
      const local = localApi(sandbox.endpoints);
      const { created, putStatus } = await local.declareAndPut(path, bytes, 'application/octet-stream', {
        [name]: value,
      });
      expect(created.status).toBe(201);
      expect(putStatus, 'S3 takes an unsigned representation header').toBe(200);
      const ended = await waitFor(`${path}'s upload ended`, async () => {
        const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
        return u.body.status === 'pending' ? undefined : u.body;
      });
      expect(ended.status).toBe('rejected');
      expect(ended.reason).toContain(name);
      expect((await api('GET', `/v1/files/${enc(path)}`)).status).toBe(404);
      await waitFor(
        `${name}'s version deleted`,
        async () => (await blobVersions(sha256)).versions.length === 0,
      );

      const again = await local.declareAndPut(path, bytes, 'application/octet-stream');
      expect(again.putStatus).toBe(200);
      await waitFor(`${path} committed`, async () => {
        const u = await api('GET', `/v1/uploads/${again.created.body.uploadId}`);
        return u.body.status === 'committed';
      });
      const { bytes: served } = await contentViaApi(path);
      expect(served.equals(bytes)).toBe(true);
      const response = await fetch((await contentViaApi(path)).location);
      // The link's own disposition (attachment for a type a browser would not show), never the uploader's.
      expect(response.headers.get(name)).not.toBe(value);
    },
  );
});

describe('verified bytes survive a write over their blob', () => {
  it('the origin bucket is versioned locally, as on AWS', async () => {
    const out = await s3.send(new GetBucketVersioningCommand({ Bucket: sandbox.endpoints.originBucket }));
    expect(out.Status).toBe('Enabled');
  });

  it('after an overwrite, the content URL, every target, the agent and later copies all hold the verified bytes', async () => {
    expect(s3Targets().length).toBeGreaterThan(0);
    expect(pullTargets().length).toBeGreaterThan(0);
    const good = Buffer.from(`verified bytes ${Date.now()} `.repeat(3000));
    const sha256 = sha256Hex(good);
    const path = 'pinned/original.png';

    // 1. Upload, commit, deliver everywhere.
    const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(path, good, 'image/png');
    expect(created.status).toBe(201);
    expect(putStatus).toBe(200);
    await waitFor('commit', async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed';
    });
    await delivered(path, good);
    const [verified] = (await blobVersions(sha256)).versions;
    expect(verified?.VersionId).toBeDefined();
    const rejectedBefore = await metric('mirror_ingest_rejections_total');

    // 2. Other bytes straight into blobs/<sha256>, with the stack's own credentials.
    const bad = tamper(good);
    const overwriteAt = Date.now();
    const overwrite = await s3.send(
      new PutObjectCommand({ Bucket: sandbox.endpoints.originBucket, Key: `blobs/${sha256}`, Body: bad }),
    );
    expect(overwrite.VersionId).toBeDefined();
    expect(overwrite.VersionId).not.toBe(verified?.VersionId);

    // 3. The ingest processes that event: the bad version goes, the verified one stays.
    await waitFor('the bad version deleted', async () => {
      const { versions } = await blobVersions(sha256);
      return versions.every((v) => v.VersionId !== overwrite.VersionId);
    });
    console.log(
      `overwrite → bad version deleted by the ingest: ${((Date.now() - overwriteAt) / 1000).toFixed(2)} s`,
    );
    const after = await blobVersions(sha256);
    expect(after.versions.map((v) => v.VersionId)).toEqual([verified?.VersionId]);
    expect(after.markers).toEqual([]);
    const rejected = await waitFor('the rejection counted', async () => {
      const n = await metric('mirror_ingest_rejections_total');
      return n > rejectedBefore ? n : undefined;
    });
    expect(rejected).toBe(rejectedBefore + 1);

    // 4. The content URL names the verified version and serves its bytes.
    const content = await contentViaApi(path);
    expect(content.location.searchParams.get('versionId')).toBe(verified?.VersionId);
    expect(content.bytes.equals(good)).toBe(true);
    const upload = await api('GET', `/v1/uploads/${created.body.uploadId}`);
    expect(upload.body).toMatchObject({ status: 'committed', version: 1 });

    // 5. Every target and the agent's folder still hold the verified bytes.
    await delivered(path, good);

    // 6. A new upload of the same content elsewhere copies the verified bytes everywhere (the
    //    replicas copy from the origin, the agent downloads the blob).
    const file = join(stack.dir, 'same-content.png');
    await writeFile(file, good);
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const again = await uploadFile(
      {
        client,
        putFile: createPutFile(),
        sendParts: createPartSender(client),
        clock: systemClock,
        progress: { phase: () => undefined, bytes: () => undefined, stop: () => undefined } as never,
      },
      { file, path: 'pinned/copy.png', contentType: 'image/png' },
    );
    expect(again).toMatchObject({ status: 'committed', version: 1 });
    await delivered('pinned/copy.png', good);

    // 7. A reconcile re-copy (the replica object deleted by hand) copies the verified bytes.
    const [first] = s3Targets();
    if (!first) throw new Error('no S3 target');
    await s3For(first.bucket).send(
      new DeleteObjectCommand({ Bucket: first.bucket, Key: `${first.keyPrefix}${path}` }),
    );
    const report = await sandbox.reconcile({ targetIds: [first.id] });
    expect(report.targets[first.id]?.missing).toBe(1);
    const recopied = await waitFor('the re-copy', () => getBytes(first.bucket, `${first.keyPrefix}${path}`));
    expect(recopied.equals(good)).toBe(true);

    // Still exactly one version of the blob: the verified one.
    expect((await blobVersions(sha256)).versions.map((v) => v.VersionId)).toEqual([verified?.VersionId]);
    // Seven steps through cold functions on a shared machine: about a minute seen here.
  }, 240_000);

  /** A committed file whose blob holds one verified version. */
  async function committedFile(path: string) {
    const good = Buffer.from(`${path} ${Date.now()} `.repeat(2000));
    const sha256 = sha256Hex(good);
    const { created } = await localApi(sandbox.endpoints).declareAndPut(path, good, 'image/png');
    expect(created.status).toBe(201);
    await waitFor(`commit of ${path}`, async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed';
    });
    const [verified] = (await blobVersions(sha256)).versions;
    return { good, sha256, verifiedId: verified?.VersionId as string };
  }

  /** Waits until the blob holds exactly its verified version again, then checks the content URL. */
  async function onlyVerifiedRemains(
    path: string,
    file: { good: Buffer; sha256: string; verifiedId: string },
  ) {
    await waitFor('only the verified version left', async () => {
      const { versions } = await blobVersions(file.sha256);
      return versions.length === 1 && versions[0]?.VersionId === file.verifiedId;
    });
    const content = await contentViaApi(path);
    expect(content.location.searchParams.get('versionId')).toBe(file.verifiedId);
    expect(content.bytes.equals(file.good)).toBe(true);
  }

  it('other bytes copied over the blob (CopyObject) are deleted by version, and counted', async () => {
    const path = 'pinned/copied-over.png';
    const file = await committedFile(path);
    const before = await metric('mirror_ingest_rejections_total');
    const decoy = `decoys/${Date.now()}`;
    await s3.send(
      new PutObjectCommand({
        Bucket: sandbox.endpoints.originBucket,
        Key: decoy,
        Body: Buffer.alloc(4000, 7),
      }),
    );
    const copied = await s3.send(
      new CopyObjectCommand({
        Bucket: sandbox.endpoints.originBucket,
        Key: `blobs/${file.sha256}`,
        CopySource: `${sandbox.endpoints.originBucket}/${decoy}`,
      }),
    );
    expect(copied.VersionId).toBeDefined();
    await onlyVerifiedRemains(path, file);
    await waitFor(
      'the rejection counted',
      async () => (await metric('mirror_ingest_rejections_total')) > before,
    );
  });

  it('other bytes completed over the blob as a multipart upload are deleted by version, and counted', async () => {
    const path = 'pinned/multipart-over.png';
    const file = await committedFile(path);
    const before = await metric('mirror_ingest_rejections_total');
    const key = `blobs/${file.sha256}`;
    const bucket = sandbox.endpoints.originBucket;
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const part = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: tamper(file.good) }),
    );
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );
    await onlyVerifiedRemains(path, file);
    await waitFor(
      'the rejection counted',
      async () => (await metric('mirror_ingest_rejections_total')) > before,
    );
  });

  it('the same bytes written again make a duplicate version that goes, with no rejection counted', async () => {
    const path = 'pinned/same-again.png';
    const file = await committedFile(path);
    const discardedBefore = await metric('mirror_ingest_rejections_total');
    const again = await s3.send(
      new PutObjectCommand({
        Bucket: sandbox.endpoints.originBucket,
        Key: `blobs/${file.sha256}`,
        Body: file.good,
      }),
    );
    expect(again.VersionId).not.toBe(file.verifiedId);
    await onlyVerifiedRemains(path, file);
    // The ingest said why it deleted that version, and its metrics for that event count no rejection.
    const at = await waitFor('the ingest outcome', () => {
      const i = ingestLines.findIndex(
        (l) => l.includes('"ingested"') && l.includes(again.VersionId as string),
      );
      return i >= 0 ? i : undefined;
    });
    expect(JSON.parse(ingestLines[at] as string).outcome.discarded).toEqual({
      versionId: again.VersionId,
      reason: 'duplicate of the pinned version',
    });
    const emf = await waitFor('its metrics', () =>
      ingestLines.slice(at).find((l) => l.includes('"BlobVersionsDiscarded"')),
    );
    expect(JSON.parse(emf).IngestRejected).toBeUndefined();
    expect(await metric('mirror_ingest_rejections_total')).toBe(discardedBefore);
  });

  it('forged notifications (a version that is not there, the verified one, none) change nothing', async () => {
    const path = 'pinned/forged-events.png';
    const file = await committedFile(path);
    const other = await committedFile('pinned/another-blob.png');
    const before = await metric('mirror_ingest_rejections_total');
    const sqs = new SQSClient({
      region: sandbox.endpoints.s3.region,
      endpoint: sandbox.endpoints.sqs.endpoint,
      credentials: { ...sandbox.endpoints.s3.credentials },
    });
    const ids: string[] = [];
    // Another blob's version id (no such version of this key), the verified one, and none at all.
    for (const versionId of [other.verifiedId, file.verifiedId, undefined]) {
      const object = {
        key: `blobs/${file.sha256}`,
        size: 1,
        eTag: 'forged',
        ...(versionId ? { versionId } : {}),
      };
      const sent = await sqs.send(
        new SendMessageCommand({
          QueueUrl: sandbox.endpoints.ingest.queue,
          MessageBody: JSON.stringify({
            Records: [
              {
                eventName: 'ObjectCreated:Put',
                s3: { bucket: { name: sandbox.endpoints.originBucket }, object },
              },
            ],
          }),
        }),
      );
      ids.push(sent.MessageId as string);
    }
    sqs.destroy();
    const outcomes = await waitFor('the three outcomes', () => {
      const found = ids.map((id) =>
        ingestLines.find((l) => l.includes('"ingested"') && l.includes(`"messageId":"${id}"`)),
      );
      return found.every((l) => l !== undefined)
        ? found.map((l) => JSON.parse(l as string).outcome)
        : undefined;
    });
    expect(outcomes[0]).toMatchObject({ kind: 'ignored' });
    expect(outcomes[1]).toMatchObject({ kind: 'committed', committed: [], rejected: [] });
    expect(outcomes[2]).toMatchObject({ kind: 'committed', committed: [], rejected: [] });
    expect((await blobVersions(file.sha256)).versions.map((v) => v.VersionId)).toEqual([file.verifiedId]);
    expect((await blobVersions(other.sha256)).versions.map((v) => v.VersionId)).toEqual([other.verifiedId]);
    await onlyVerifiedRemains(path, file);
    expect(await metric('mirror_ingest_rejections_total')).toBe(before);
  });
});

/** The same length, the last byte flipped. */
function tamper(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  out[out.length - 1] = (out[out.length - 1] as number) ^ 0xff;
  return out;
}
