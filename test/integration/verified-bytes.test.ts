/**
 * One write must not destroy verified content (issue 8, item 4). Through the local stack:
 * a file is committed and delivered everywhere, then other bytes are written straight
 * over its blob in the origin bucket. The ingest deletes only that object version; the
 * content URL, every replica, the on-prem agent's folder and every later copy still
 * serve the verified bytes, and the rejection is counted.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MirrorApiClient } from '../../cli/api-client.js';
import { createPartSender } from '../../cli/multipart.js';
import { createPutFile } from '../../cli/put-file.js';
import { systemClock, uploadFile } from '../../cli/upload.js';
import { type Sandbox, startSandbox } from '../../local/sandbox.js';
import { localApi, sha256Hex } from '../support/local-api.js';
import { waitFor as waitForShort } from '../support/wait.js';

let sandbox: Sandbox;
let dataDir: string;
let s3: S3Client;
const enc = encodeURIComponent;
/** Cold functions on a machine shared with other suites: allow a minute, as other stack tests do. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false) =>
  waitForShort(what, probe, 60_000, 100);

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-verified-bytes-'));
  sandbox = await startSandbox({
    dataDir,
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    webDir: null,
    functionLog: () => undefined,
    polling: { waitTimeSeconds: 1 },
    agents: { heartbeatSeconds: 1, waitTimeSeconds: 1, shutdownGraceSeconds: 2 },
  });
  const e = sandbox.endpoints.s3;
  s3 = new S3Client({
    region: e.region,
    endpoint: e.endpoint,
    credentials: { ...e.credentials },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
});

afterAll(async () => {
  s3?.destroy();
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
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
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
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
    const bad = Buffer.from(good);
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff;
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
    const file = join(dataDir, 'same-content.png');
    await writeFile(file, good);
    const client = new MirrorApiClient({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const again = await uploadFile(
      {
        client,
        putFile: createPutFile(),
        sendParts: createPartSender({ api: client.baseUrl, token: client.token }),
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
    await s3.send(new DeleteObjectCommand({ Bucket: first.bucket, Key: `${first.keyPrefix}${path}` }));
    const report = await sandbox.reconcile({ targetIds: [first.id] });
    expect(report.targets[first.id]?.missing).toBe(1);
    const recopied = await waitFor('the re-copy', () => getBytes(first.bucket, `${first.keyPrefix}${path}`));
    expect(recopied.equals(good)).toBe(true);

    // Still exactly one version of the blob: the verified one.
    expect((await blobVersions(sha256)).versions.map((v) => v.VersionId)).toEqual([verified?.VersionId]);
  });
});
