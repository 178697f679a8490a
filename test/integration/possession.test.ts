/**
 * Proof of possession through the local stack's HTTP API: knowing a SHA-256 gets nobody a file,
 * no answer tells what the mirror holds, and a client holding the bytes still sends none.
 */
import { createHash, randomBytes } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPartSender } from '../../cli/multipart.js';
import { createPutFile } from '../../cli/put-file.js';
import { uploadFile as cliUpload, systemClock } from '../../cli/upload.js';
import type { Sandbox } from '../../local/sandbox.js';
import { MirrorApi } from '../../web/client/api.js';
import { PATH_CHECK_FROM_BYTES } from '../../web/client/upload/claim.js';
import { uploadFile as webUpload } from '../../web/client/upload-file.js';
import { type LocalApiResponse, localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

const enc = encodeURIComponent;
const KiB = 1024;
const MiB = 1024 * KiB;

/** Ingest invocations finished, in every sandbox of this file. */
let ingestsDone = 0;

function start(name: string, functionEnv?: Record<string, string>) {
  return startTestStack(name, {
    onInvocation: (report) => {
      if (report.functionName === 'ingest') ingestsDone++;
    },
    schedules: false,
    ...(process.env.H3_DEBUG ? { functionLog: undefined } : {}),
    ...(functionEnv ? { functionEnv } : {}),
  });
}

interface ChallengeBody {
  nonce: string;
  ranges: { offset: number; length: number }[];
  expiresAt: string;
}

/** The digest a holder of `bytes` answers with. */
function digestFor(challenge: ChallengeBody, bytes: Buffer): string {
  const hash = createHash('sha256').update(Buffer.from(challenge.nonce, 'base64'));
  for (const r of challenge.ranges) hash.update(bytes.subarray(r.offset, r.offset + r.length));
  return hash.digest('hex');
}

/** The shape of a JSON value: its keys, recursively, and the type of each leaf. */
function shapeOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shapeOf);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, shapeOf(v)]),
    );
  }
  return typeof value;
}

describe('proof of possession', () => {
  let stack: TestStack;
  let sandbox: Sandbox;
  let s3: S3Client;
  let s3For: TestStack['s3For'];
  let api: ReturnType<typeof localApi>;

  beforeAll(async () => {
    stack = await start('possession');
    ({ sandbox, s3, s3For } = stack);
    api = localApi(sandbox.endpoints);
  });
  afterAll(() => stack?.stop());

  const claim = (path: string, bytes: Buffer, over: Record<string, unknown> = {}) =>
    api.call('POST', '/v1/uploads', {
      path,
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
      ...over,
    });
  const prove = (uploadId: string, digest: string) =>
    api.call('POST', `/v1/uploads/${uploadId}/proof`, { digest });

  /** Uploads bytes the normal way (the web client: one PUT or parts) and waits for the commit. */
  async function store(path: string, bytes: Buffer) {
    const result = await webUpload(new Blob([new Uint8Array(bytes)]), {
      api: sandbox.endpoints.api,
      token: sandbox.endpoints.token,
      path,
      contentType: 'application/octet-stream',
      workerUrl: null,
      pollIntervalMs: 50,
    });
    expect(result).toMatchObject({ status: 'committed', deduplicated: false, bytesSent: bytes.length });
  }

  async function expectNothingAt(path: string) {
    expect((await api.call('GET', `/v1/files/${enc(path)}`)).status).toBe(404);
    expect((await api.call('GET', `/v1/files/${enc(path)}/versions`)).status).toBe(404);
  }

  function expectRefused(answer: LocalApiResponse) {
    expect(answer.status).toBe(422);
    expect(answer.body).toEqual({
      error: { code: 'proof_not_accepted', field: 'digest', message: 'upload the bytes' },
    });
  }

  async function replicaBytes(bucket: string, key: string): Promise<Buffer | undefined> {
    try {
      const out = await s3For(bucket).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch {
      return undefined;
    }
  }

  const s3Targets = () =>
    Object.values(sandbox.endpoints.targets).filter((t) => t.kind === 's3') as { bucket: string }[];

  it('claiming known content by its hash alone commits nothing, with no proof or a wrong one', async () => {
    const bytes = randomBytes(40 * KiB);
    await store('pop/known/original.bin', bytes);

    const noProof = await claim('pop/known/by-hash.bin', bytes);
    expect(noProof.status).toBe(201);
    expect(noProof.body.status).toBe('pending');
    await expectNothingAt('pop/known/by-hash.bin');

    const wrong = await claim('pop/known/wrong-digest.bin', bytes);
    expectRefused(await prove(wrong.body.uploadId, 'ab'.repeat(32)));
    // A digest over the right ranges of other bytes is as wrong.
    const other = await claim('pop/known/other-bytes.bin', bytes);
    expectRefused(
      await prove(other.body.uploadId, digestFor(other.body.challenge, Buffer.alloc(bytes.length))),
    );
    await expectNothingAt('pop/known/wrong-digest.bin');
    await expectNothingAt('pop/known/other-bytes.bin');
    expect((await api.call('GET', `/v1/uploads/${wrong.body.uploadId}`)).body.status).toBe('pending');
  });

  it("claiming a deleted file's content by its hash alone commits nothing", async () => {
    const bytes = randomBytes(20 * KiB);
    await store('pop/deleted/secret.bin', bytes);
    expect((await api.call('DELETE', `/v1/files/${enc('pop/deleted/secret.bin')}`)).status).toBe(200);

    const elsewhere = await claim('pop/deleted/stolen.bin', bytes);
    expect(elsewhere.status).toBe(201);
    expectRefused(await prove(elsewhere.body.uploadId, 'cd'.repeat(32)));
    await expectNothingAt('pop/deleted/stolen.bin');

    const samePath = await claim('pop/deleted/secret.bin', bytes);
    expect(samePath.status).toBe(201);
    expectRefused(await prove(samePath.body.uploadId, 'cd'.repeat(32)));
    const head = await api.call('GET', `/v1/files/${enc('pop/deleted/secret.bin')}`);
    expect(head.body.head).toMatchObject({ version: 2, deleted: true });
  });

  it('a right hash with a wrong size is answered as unknown content is, without the stored size', async () => {
    const storedSize = 123_457;
    const bytes = randomBytes(storedSize);
    await store('pop/sized/original.bin', bytes);
    const declared = storedSize + 1000;
    const wrongSize = await claim('pop/sized/claimed.bin', bytes, { size: declared });
    const unknown = await claim('pop/sized/unknown.bin', randomBytes(declared));

    expect(wrongSize.status).toBe(unknown.status);
    expect(shapeOf(wrongSize.body)).toEqual(shapeOf(unknown.body));
    expect(JSON.stringify(wrongSize.body)).not.toContain(String(storedSize));
    for (const r of wrongSize.body.challenge.ranges)
      expect(r.offset + r.length).toBeLessThanOrEqual(declared);
    // Even a digest over the stored bytes at the challenged ranges does not commit a wrong size.
    expectRefused(await prove(wrongSize.body.uploadId, digestFor(wrongSize.body.challenge, bytes)));
    await expectNothingAt('pop/sized/claimed.bin');
  });

  it('a wrong-size claim of stored content stays pending when those bytes arrive again: nothing tells the size', async () => {
    const storedSize = 54_321;
    const bytes = randomBytes(storedSize);
    await store('pop/sized-later/original.bin', bytes);
    const wrongSize = await claim('pop/sized-later/claimed.bin', bytes, { size: storedSize + 7 });
    expect(wrongSize.status).toBe(201);
    // Someone uploads the same bytes again, the plain way: the ingest sees them and its pending claims.
    const ingestsBefore = ingestsDone;
    const { created, putStatus } = await api.declareAndPut(
      'pop/sized-later/again.bin',
      bytes,
      'application/octet-stream',
    );
    expect(putStatus).toBe(200);
    await waitFor('the commit of the bytes sent again', async () => {
      const u = await api.call('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed' ? true : undefined;
    });
    // The same ingest run goes on to the other pending claims of these bytes: let it end.
    await waitFor('the end of that ingest run', async () => (ingestsDone > ingestsBefore ? true : undefined));
    const view = await api.call('GET', `/v1/uploads/${wrongSize.body.uploadId}`);
    expect(view.body.status).toBe('pending');
    expect(JSON.stringify(view.body)).not.toContain(String(storedSize));
    await expectNothingAt('pop/sized-later/claimed.bin');
  });

  it('the answer for known and unknown content has the same status and keys, small and multipart', async () => {
    for (const size of [300 * KiB, 17 * MiB]) {
      const bytes = randomBytes(size);
      await store(`pop/shape/${size}/original.bin`, bytes);
      const known = await claim(`pop/shape/${size}/known.bin`, bytes);
      const unknown = await claim(`pop/shape/${size}/unknown.bin`, randomBytes(size));
      expect(known.status).toBe(201);
      expect(unknown.status).toBe(201);
      expect(shapeOf(known.body)).toEqual(shapeOf(unknown.body));
      expect(Buffer.from(known.body.challenge.nonce, 'base64')).toHaveLength(32);
      expect(known.body.challenge.nonce).not.toBe(unknown.body.challenge.nonce);
      // A proof for unknown content is refused exactly as a wrong one.
      expectRefused(await prove(unknown.body.uploadId, digestFor(unknown.body.challenge, bytes)));
    }
  });

  it('a right proof commits a deduplicated version with no byte sent; every target serves the original', async () => {
    for (const [size, label] of [
      [100 * KiB, 'whole'],
      [700 * KiB, 'ranged'],
    ] as const) {
      const bytes = randomBytes(size);
      await store(`pop/proof/${label}/original.bin`, bytes);
      const claimed = await claim(`pop/proof/${label}/copy.bin`, bytes);
      const { ranges } = claimed.body.challenge as ChallengeBody;
      if (label === 'whole') expect(ranges).toEqual([{ offset: 0, length: size }]);
      else {
        expect(ranges.length).toBeGreaterThanOrEqual(3);
        for (const r of ranges) {
          expect(r.length).toBeLessThanOrEqual(64 * KiB);
          expect(r.offset + r.length).toBeLessThanOrEqual(size);
        }
      }
      const proof = await prove(claimed.body.uploadId, digestFor(claimed.body.challenge, bytes));
      expect(proof.status).toBe(200);
      expect(proof.body).toMatchObject({
        status: 'committed',
        uploadId: claimed.body.uploadId,
        path: `pop/proof/${label}/copy.bin`,
        version: 1,
        deduplicated: true,
      });
      const upload = await api.call('GET', `/v1/uploads/${claimed.body.uploadId}`);
      expect(upload.body).toMatchObject({ status: 'committed', version: 1, deduplicated: true });
      expect(upload.body).not.toHaveProperty('challenge');

      const content = await api.call('GET', `/v1/files/${enc(`pop/proof/${label}/copy.bin`)}/content`);
      expect(content.status).toBe(302);
      const origin = Buffer.from(
        await (await fetch(content.headers.get('location') as string)).arrayBuffer(),
      );
      expect(origin.equals(bytes)).toBe(true);
      for (const target of s3Targets()) {
        const copy = await waitFor('the replica', () =>
          replicaBytes(target.bucket, `pop/proof/${label}/copy.bin`),
        );
        expect(copy.equals(bytes)).toBe(true);
      }
    }
  });

  it('stored bytes lost behind the ledger: a right proof is refused (no 500), and the bytes sent again commit', async () => {
    const bytes = randomBytes(90 * KiB);
    await store('pop/lost/original.bin', bytes);
    const Bucket = sandbox.endpoints.originBucket;
    const Prefix = `blobs/${sha256Hex(bytes)}`;
    const listed = await s3.send(new ListObjectVersionsCommand({ Bucket, Prefix }));
    for (const v of [...(listed.Versions ?? []), ...(listed.DeleteMarkers ?? [])])
      await s3.send(new DeleteObjectCommand({ Bucket, Key: v.Key, VersionId: v.VersionId }));

    const claimed = await claim('pop/lost/copy.bin', bytes);
    expectRefused(await prove(claimed.body.uploadId, digestFor(claimed.body.challenge, bytes)));
    const { url, headers } = claimed.body.upload;
    const { 'content-length': _l, ...rest } = headers as Record<string, string>;
    expect((await fetch(url, { method: 'PUT', headers: rest, body: new Uint8Array(bytes) })).status).toBe(
      200,
    );
    await waitFor('the commit of the bytes sent again', async () => {
      const u = await api.call('GET', `/v1/uploads/${claimed.body.uploadId}`);
      return u.body.status === 'committed' ? true : undefined;
    });
    const content = await api.call('GET', `/v1/files/${enc('pop/lost/copy.bin')}/content`);
    const served = Buffer.from(await (await fetch(content.headers.get('location') as string)).arrayBuffer());
    expect(served.equals(bytes)).toBe(true);
  });

  it('a second proof after a wrong one is refused even when right', async () => {
    const bytes = randomBytes(80 * KiB);
    await store('pop/twice/original.bin', bytes);
    const claimed = await claim('pop/twice/copy.bin', bytes);
    expectRefused(await prove(claimed.body.uploadId, '00'.repeat(32)));
    expectRefused(await prove(claimed.body.uploadId, digestFor(claimed.body.challenge, bytes)));
    await expectNothingAt('pop/twice/copy.bin');
    // The bytes themselves still go in: the upload stayed pending for them.
    const { url, headers } = claimed.body.upload;
    const { 'content-length': _l, ...rest } = headers as Record<string, string>;
    expect((await fetch(url, { method: 'PUT', headers: rest, body: new Uint8Array(bytes) })).status).toBe(
      200,
    );
    const done = await waitFor('the commit of the sent bytes', async () => {
      const u = await api.call('GET', `/v1/uploads/${claimed.body.uploadId}`);
      return u.body.status === 'pending' ? undefined : u.body;
    });
    expect(done).toMatchObject({ status: 'committed', version: 1 });
  });

  it('a proof sent again after it committed (its answer lost) gets the same answer; nothing more is committed', async () => {
    const bytes = randomBytes(60 * KiB);
    await store('pop/retry/original.bin', bytes);
    const claimed = await claim('pop/retry/copy.bin', bytes);
    const digest = digestFor(claimed.body.challenge, bytes);
    const first = await prove(claimed.body.uploadId, digest);
    expect(first.status).toBe(200);
    const again = await prove(claimed.body.uploadId, digest);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(again.body).toMatchObject({ status: 'committed', version: 1, deduplicated: true });
    const versions = await api.call('GET', `/v1/files/${enc('pop/retry/copy.bin')}/versions`);
    expect(versions.body.versions).toHaveLength(1);
    // The web client's own call, as the CLI's retry makes it, resolves with the commit.
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    expect(await client.proveUpload(claimed.body.uploadId, digest)).toEqual(first.body);
  });

  it('a proof that lost its ifVersion race, or whose path became a folder, ends its upload with the code as the ingest does (version_conflict: / path_conflict:)', async () => {
    const bytes = randomBytes(30 * KiB);
    await store('pop/race/original.bin', bytes);
    await store('pop/race/raced.bin', randomBytes(1 * KiB));
    const claimed = await claim('pop/race/raced.bin', bytes, { ifVersion: 1 });
    await store('pop/race/raced.bin', randomBytes(2 * KiB)); // another writer commits version 2
    const lost = await prove(claimed.body.uploadId, digestFor(claimed.body.challenge, bytes));
    expect(lost.status).toBe(409);
    expect(lost.body.error).toMatchObject({ code: 'version_conflict', field: 'ifVersion' });
    // A client reading the upload (its proof's answer lost, or another client joined to it) must
    // tell a lost race from a failed verification by the reason's code, as after the ingest.
    expect((await api.call('GET', `/v1/uploads/${claimed.body.uploadId}`)).body).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/^version_conflict: "pop\/race\/raced.bin" is at version 2/),
    });

    const asFile = await claim('pop/race/dir', bytes);
    await store('pop/race/dir/under.bin', randomBytes(1 * KiB));
    const taken = await prove(asFile.body.uploadId, digestFor(asFile.body.challenge, bytes));
    expect(taken.status).toBe(400);
    expect(taken.body.error).toMatchObject({ code: 'path_conflict', field: 'path' });
    expect((await api.call('GET', `/v1/uploads/${asFile.body.uploadId}`)).body).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/^path_conflict: /),
    });
  });

  it('the web client in Node commits stored content with no PUT, small and multipart', async () => {
    for (const size of [200 * KiB, 17 * MiB + 5]) {
      const bytes = randomBytes(size);
      const file = join(stack.dir, `web-${size}.bin`);
      await writeFile(file, bytes);
      const blob = await openAsBlob(file);
      const first = await webUpload(blob, {
        api: sandbox.endpoints.api,
        token: sandbox.endpoints.token,
        path: `pop/web/${size}/original.bin`,
        workerUrl: null,
        pollIntervalMs: 50,
      });
      expect(first).toMatchObject({ status: 'committed', deduplicated: false });

      const requests: string[] = [];
      const phases: string[] = [];
      const second = await webUpload(blob, {
        api: sandbox.endpoints.api,
        token: sandbox.endpoints.token,
        path: `pop/web/${size}/copy.bin`,
        workerUrl: null,
        fetch: (input, init) => {
          requests.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
          return fetch(input, init);
        },
        onProgress: (p) => phases.push(p.phase),
      });
      expect(second).toMatchObject({ status: 'committed', version: 1, deduplicated: true, bytesSent: 0 });
      // A file this large is asked about before its hash (the path check, web/client/upload/claim.ts).
      const checked = size >= PATH_CHECK_FROM_BYTES ? ['GET /v1/paths'] : [];
      expect(requests).toEqual([...checked, 'POST /v1/uploads', `POST /v1/uploads/${second.uploadId}/proof`]);
      expect(phases.at(-1)).toBe('deduplicated');
      expect(phases).not.toContain('uploading');
    }
  });

  it('the CLI upload of a stored file commits with no PUT, small and multipart', async () => {
    for (const size of [50 * KiB, 17 * MiB + 9]) {
      const bytes = randomBytes(size);
      const file = join(stack.dir, `cli-${size}.bin`);
      await writeFile(file, bytes);
      const requests: string[] = [];
      const client = new MirrorApi({
        baseUrl: sandbox.endpoints.api,
        token: sandbox.endpoints.token,
        fetch: (input: string, init: RequestInit) => {
          requests.push(`${init.method ?? 'GET'} ${new URL(input).pathname}`);
          return fetch(input, init);
        },
      });
      const puts: string[] = [];
      const putFile = createPutFile();
      const deps = {
        client,
        putFile: async (request: Parameters<typeof putFile>[0]) => {
          puts.push(request.url);
          return putFile(request);
        },
        sendParts: createPartSender(client),
        clock: systemClock,
        progress: { phase: () => undefined, bytes: () => undefined, stop: () => undefined } as never,
      };
      const first = await cliUpload(deps, { file, path: `pop/cli/${size}/original.bin` });
      expect(first).toMatchObject({ status: 'committed', deduplicated: false });

      requests.length = 0;
      puts.length = 0;
      const second = await cliUpload(deps, { file, path: `pop/cli/${size}/copy.bin` });
      expect(second).toMatchObject({ status: 'committed', version: 1, deduplicated: true });
      expect(puts).toEqual([]);
      expect(requests).toEqual(['POST /v1/uploads', `POST /v1/uploads/${second.uploadId}/proof`]);
    }
  });
});

describe('proof of possession: an expired challenge', () => {
  let stack: TestStack;
  let sandbox: Sandbox;

  beforeAll(async () => {
    // Presigned URLs and challenges live 2 s here.
    stack = await start('possession-ttl', { MIRROR_PRESIGN_TTL_SECONDS: '2' });
    sandbox = stack.sandbox;
  });
  afterAll(() => stack?.stop());

  it('is refused, even with the right digest', async () => {
    const api = localApi(sandbox.endpoints);
    const bytes = randomBytes(30 * KiB);
    const { created, putStatus } = await api.declareAndPut('pop/ttl/original.bin', bytes, 'image/png');
    expect(putStatus).toBe(200);
    expect(created.status).toBe(201);
    await waitFor('the first commit', async () =>
      (await api.call('GET', `/v1/files/${enc('pop/ttl/original.bin')}`)).status === 200 ? true : undefined,
    );
    const claimed = await api.call('POST', '/v1/uploads', {
      path: 'pop/ttl/copy.bin',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'image/png',
    });
    const expiresAt = Date.parse(claimed.body.challenge.expiresAt);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 500));
    const proof = await api.call('POST', `/v1/uploads/${claimed.body.uploadId}/proof`, {
      digest: digestFor(claimed.body.challenge, bytes),
    });
    expect(proof.status).toBe(422);
    expect(proof.body.error).toEqual({
      code: 'proof_not_accepted',
      field: 'digest',
      message: 'upload the bytes',
    });
    expect((await api.call('GET', `/v1/files/${enc('pop/ttl/copy.bin')}`)).status).toBe(404);
  });
});
