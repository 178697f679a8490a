/**
 * Claims are idempotent: the Idempotency-Key header through the API handler (API Gateway v2
 * events) and the ledger's claim under it (dynalite, a clock the test moves); and content
 * identical to a path's head makes no new version.
 */
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDEMPOTENCY_KEY_TTL_MS, IDEMPOTENCY_LOCK_MS, runOnce } from '../../functions/core/idempotency.js';
import { ingestBlob } from '../../functions/core/ingest.js';
import type { Clock } from '../../functions/core/ports.js';
import { httpEvent, iamAuthorizer, jwtAuthorizer, lambdaContext } from '../support/api-events.js';
import { makeWorld, putBlob, sha256Hex, type World, worldApi } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
let world: World;
let table: string;
let api: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

beforeAll(async () => {
  emulators = await startEmulators();
  world = await makeWorld(emulators);
  table = world.table;
  const handler = worldApi(world, {
    // No targets for the handler: a delete's fan-out is not what this file tests (the world's
    // ingest still fans out through the emulator's client).
    targets: [],
    limits: { contentTypes: ['image/*', 'text/plain'] },
  });
  api = (event) => handler(event, lambdaContext('api'));
});
afterAll(async () => {
  await emulators?.stop();
});

async function snapshot() {
  const items = await emulators.dynamo.send(new ScanCommand({ TableName: table, Select: 'COUNT' }));
  const objects = await emulators.s3.send(new ListObjectsV2Command({ Bucket: world.originBucket }));
  return { items: items.Count, objects: objects.KeyCount ?? 0 };
}

const enc = encodeURIComponent;
const body = (r: APIGatewayProxyStructuredResultV2) => JSON.parse(r.body as string);
const claim = (
  path: string,
  bytes: Buffer,
  key?: string,
  extra: Record<string, unknown> = {},
  authorizer?: Record<string, unknown>,
) =>
  httpEvent('POST', '/v1/uploads', {
    body: { path, size: bytes.length, sha256: sha256Hex(bytes), contentType: 'text/plain', ...extra },
    ...(key === undefined ? {} : { headers: { 'idempotency-key': key } }),
    ...(authorizer === undefined ? {} : { authorizer }),
  });

/** Sends the bytes where the presigned PUT would and runs the ingest, as the S3 event would. */
async function deliver(bytes: Buffer) {
  const sha = sha256Hex(bytes);
  const put = await putBlob(emulators, world.originBucket, sha, bytes);
  return ingestBlob(world.deps, {
    key: `blobs/${sha}`,
    size: bytes.length,
    etag: put.etag,
    versionId: undefined,
  });
}

describe('Idempotency-Key on POST /v1/uploads and DELETE /v1/files/{path}', () => {
  it('a retried claim with the same key gets the first answer: one upload, one version', async () => {
    const bytes = Buffer.from(`retried ${Date.now()}`);
    const key = crypto.randomUUID();
    const first = await api(claim('idem/retried.txt', bytes, key));
    expect(first.statusCode).toBe(201);
    const second = await api(claim('idem/retried.txt', bytes, key));
    expect(second.statusCode).toBe(201);
    expect(body(second)).toEqual(body(first));
    expect(second.headers?.['idempotent-replayed']).toBe('true');
    expect(first.headers?.['idempotent-replayed']).toBeUndefined();
    expect(await world.ledger.listPendingUploads(sha256Hex(bytes))).toEqual([body(first).uploadId]);

    expect(await deliver(bytes)).toMatchObject({
      committed: [{ uploadId: body(first).uploadId, version: 1 }],
    });
    // A retry after the commit still gets the first answer, and commits nothing more.
    const third = await api(claim('idem/retried.txt', bytes, key));
    expect(body(third).uploadId).toBe(body(first).uploadId);
    expect(await world.ledger.listVersions('idem/retried.txt', { limit: 10 })).toHaveLength(1);
  });

  it('a Retry after the presigned URL expired gets a URL signed again for the rest of the upload window, and it commits', async () => {
    // URLs that live 2 s: the upload's window (URL + 5 min of grace) outlives them by far.
    const shortLived = worldApi(world, {
      targets: [],
      limits: { contentTypes: ['text/plain'], presignTtlSeconds: 2 },
    });
    const call = (event: APIGatewayProxyEventV2) => shortLived(event, lambdaContext('api'));
    const bytes = Buffer.from(`late retry ${Date.now()}`);
    const key = crypto.randomUUID();
    const first = body(await call(claim('idem/late.txt', bytes, key)));
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await fetch(first.upload.url, {
      method: 'PUT',
      headers: first.upload.headers,
      body: new Uint8Array(bytes),
    });
    expect(expired.status).toBe(403);
    const retried = await call(claim('idem/late.txt', bytes, key));
    expect(retried.headers?.['idempotent-replayed']).toBe('true');
    const again = body(retried);
    expect(again.uploadId).toBe(first.uploadId);
    expect(Date.parse(again.upload.expiresAt)).toBeGreaterThan(Date.now());
    const put = await fetch(again.upload.url, {
      method: 'PUT',
      headers: again.upload.headers,
      body: new Uint8Array(bytes),
    });
    expect(put.status).toBe(200);
    expect(
      await ingestBlob(world.deps, {
        key: `blobs/${sha256Hex(bytes)}`,
        size: bytes.length,
        etag: put.headers.get('etag') ?? '',
        versionId: put.headers.get('x-amz-version-id') ?? undefined,
      }),
    ).toMatchObject({ committed: [{ uploadId: first.uploadId, version: 1 }] });
  });

  it('the same key with a different body is refused (422) and changes nothing', async () => {
    const key = crypto.randomUUID();
    const bytes = Buffer.from(`first body ${Date.now()}`);
    expect((await api(claim('idem/a.txt', bytes, key))).statusCode).toBe(201);
    const before = await snapshot();
    const other = await api(claim('idem/b.txt', bytes, key));
    expect(other.statusCode).toBe(422);
    expect(body(other).error).toMatchObject({ code: 'idempotency_key_reused', field: 'Idempotency-Key' });
    const sameBodyOtherRoute = await api(
      httpEvent('DELETE', `/v1/files/${enc('idem/a.txt')}`, { headers: { 'idempotency-key': key } }),
    );
    expect(sameBodyOtherRoute.statusCode).toBe(422);
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['empty', ''],
    ['too long', 'k'.repeat(129)],
    ['a space', 'two words'],
    ['a slash', 'a/b'],
  ])('a key with %s is refused with 400 naming the header, and nothing is written', async (_n, key) => {
    const before = await snapshot();
    const response = await api(claim('idem/bad-key.txt', Buffer.from('x'), key));
    expect(response.statusCode).toBe(400);
    expect(body(response).error).toMatchObject({ code: 'invalid_idempotency_key', field: 'Idempotency-Key' });
    expect(await snapshot()).toEqual(before);
  });

  it('a retried DELETE with the same key answers as the first (not 404) and leaves one tombstone', async () => {
    const bytes = Buffer.from(`to delete ${Date.now()}`);
    await api(claim('idem/deleted.txt', bytes));
    await deliver(bytes);
    const key = crypto.randomUUID();
    const del = () =>
      api(
        httpEvent('DELETE', `/v1/files/${enc('idem/deleted.txt')}`, { headers: { 'idempotency-key': key } }),
      );
    const first = await del();
    expect(first.statusCode).toBe(200);
    const again = await del();
    expect(again.statusCode).toBe(200);
    expect(body(again)).toEqual(body(first));
    expect(await world.ledger.listVersions('idem/deleted.txt', { limit: 10 })).toHaveLength(2);
    // Without the key, a second DELETE is what it always was: nothing there.
    expect((await api(httpEvent('DELETE', `/v1/files/${enc('idem/deleted.txt')}`))).statusCode).toBe(404);
  });
});

describe("an Idempotency-Key is its caller's", () => {
  const alice = iamAuthorizer('arn:aws:sts::123456789012:assumed-role/uploader/alice');
  const bob = iamAuthorizer('arn:aws:sts::123456789012:assumed-role/uploader/bob');

  type Authorizer = Record<string, unknown>;
  /** Claims `bytes` at `path` under `key` as one caller, then as the other, then again as each. */
  async function claimAs(path: string, bytes: Buffer, key: string, one: Authorizer, other: Authorizer) {
    const first = [
      await api(claim(path, bytes, key, {}, one)),
      await api(claim(path, bytes, key, {}, other)),
    ];
    const retried = [
      await api(claim(path, bytes, key, {}, one)),
      await api(claim(path, bytes, key, {}, other)),
    ];
    return { first, retried };
  }

  it("another IAM principal sending the same key and body gets an upload of its own, never the first caller's URL; each caller's retry gets its own answer", async () => {
    const bytes = Buffer.from(`two callers ${Date.now()}`);
    const key = crypto.randomUUID();
    const { first, retried } = await claimAs('idem/callers.txt', bytes, key, alice, bob);
    const [a, b] = first.map((r) => {
      expect(r.statusCode).toBe(201);
      expect(r.headers?.['idempotent-replayed']).toBeUndefined();
      return body(r);
    });
    expect(b.uploadId).not.toBe(a.uploadId);
    expect(b.upload.url).not.toBe(a.upload.url);
    expect(retried.map((r) => r.headers?.['idempotent-replayed'])).toEqual(['true', 'true']);
    expect(retried.map((r) => body(r).uploadId)).toEqual([a.uploadId, b.uploadId]);
    expect((await world.ledger.listPendingUploads(sha256Hex(bytes))).sort()).toEqual(
      [a.uploadId, b.uploadId].sort(),
    );
  });

  it("callers sharing a Cognito identity pool's role are told apart by their identity; JWT callers by issuer and subject", async () => {
    const pool = 'arn:aws:sts::123456789012:assumed-role/Cognito_MirrorAuth_Role/CognitoIdentityCredentials';
    const pairs: [Authorizer, Authorizer][] = [
      [
        iamAuthorizer(pool, 'us-east-1:aaaaaaaa-0000-0000-0000-000000000001'),
        iamAuthorizer(pool, 'us-east-1:aaaaaaaa-0000-0000-0000-000000000002'),
      ],
      [jwtAuthorizer('user-1'), jwtAuthorizer('user-2')],
      [
        jwtAuthorizer('user-1', 'https://idp-a.example.com/'),
        jwtAuthorizer('user-1', 'https://idp-b.example.com/'),
      ],
    ];
    for (const [one, other] of pairs) {
      const bytes = Buffer.from(`shared role ${Date.now()} ${Math.random()}`);
      const { first, retried } = await claimAs('idem/pool.txt', bytes, crypto.randomUUID(), one, other);
      expect(first.map((r) => r.statusCode)).toEqual([201, 201]);
      expect(first.map((r) => r.headers?.['idempotent-replayed'])).toEqual([undefined, undefined]);
      const ids = first.map((r) => body(r).uploadId);
      expect(new Set(ids).size).toBe(2);
      expect(retried.map((r) => body(r).uploadId)).toEqual(ids);
      expect(retried.map((r) => r.headers?.['idempotent-replayed'])).toEqual(['true', 'true']);
    }
  });

  it("another caller's request under the same key is neither refused (422) nor blocked (409)", async () => {
    const key = crypto.randomUUID();
    const bytes = Buffer.from(`not blocked ${Date.now()}`);
    expect((await api(claim('idem/mine.txt', bytes, key, {}, alice))).statusCode).toBe(201);
    const other = await api(claim('idem/theirs.txt', bytes, key, {}, bob));
    expect(other.statusCode).toBe(201);
    expect(body(other).path).toBe('idem/theirs.txt');
    // Alice's key still refuses her another request.
    expect((await api(claim('idem/theirs.txt', bytes, key, {}, alice))).statusCode).toBe(422);
  });

  it("a delete under another caller's key deletes: it does not take that caller's tombstone for its own", async () => {
    const path = 'idem/deleted-twice.txt';
    const put = async (text: string) => {
      const bytes = Buffer.from(`${text} ${Date.now()}`);
      await api(claim(path, bytes));
      await deliver(bytes);
    };
    const key = crypto.randomUUID();
    const del = (authorizer: Record<string, unknown>) =>
      api(httpEvent('DELETE', `/v1/files/${enc(path)}`, { headers: { 'idempotency-key': key }, authorizer }));
    await put('first');
    const byAlice = await del(alice);
    expect(body(byAlice)).toMatchObject({ version: 2, deleted: true });
    await put('second');
    const byBob = await del(bob);
    expect(byBob.statusCode).toBe(200);
    expect(byBob.headers?.['idempotent-replayed']).toBeUndefined();
    expect(body(byBob)).toMatchObject({ version: 4, deleted: true });
    expect(await world.ledger.getHead(path)).toMatchObject({ version: 4, deleted: true });
  });
});

describe('identical content', () => {
  it('claiming the content a path already holds returns its head (200, unchanged) and writes nothing; newVersion asks for one', async () => {
    const bytes = Buffer.from(`same ${Date.now()}`);
    await api(claim('idem/same.txt', bytes));
    await deliver(bytes);
    const before = await snapshot();
    const again = await api(claim('idem/same.txt', bytes));
    expect(again.statusCode).toBe(200);
    expect(body(again)).toMatchObject({
      status: 'committed',
      path: 'idem/same.txt',
      version: 1,
      unchanged: true,
    });
    expect(await snapshot()).toEqual(before);

    const forced = await api(claim('idem/same.txt', bytes, undefined, { newVersion: true }));
    expect(forced.statusCode).not.toBe(200);
    expect(body(forced).unchanged).toBeUndefined();
    expect(body(forced).uploadId).not.toBe(body(again).uploadId);
  });

  it('a deleted head, another type or other bytes are not "unchanged"', async () => {
    const bytes = Buffer.from(`then deleted ${Date.now()}`);
    await api(claim('idem/gone.txt', bytes));
    await deliver(bytes);
    expect((await api(httpEvent('DELETE', `/v1/files/${enc('idem/gone.txt')}`))).statusCode).toBe(200);
    expect(body(await api(claim('idem/gone.txt', bytes))).unchanged).toBeUndefined();

    const kept = Buffer.from(`kept ${Date.now()}`);
    await api(claim('idem/kept.txt', kept));
    await deliver(kept);
    const asImage = httpEvent('POST', '/v1/uploads', {
      body: { path: 'idem/kept.txt', size: kept.length, sha256: sha256Hex(kept), contentType: 'image/png' },
    });
    expect(body(await api(asImage)).unchanged).toBeUndefined();
    expect(body(await api(claim('idem/kept.txt', Buffer.from('other bytes')))).unchanged).toBeUndefined();
  });
});

describe('identical content storage no longer has', () => {
  it('is not "unchanged": a claim of it asks for the bytes again, so they can be supplied (probe V4)', async () => {
    const bytes = Buffer.from(`lost out of band ${Date.now()}`);
    await api(claim('idem/lost.txt', bytes));
    await deliver(bytes);
    expect(body(await api(claim('idem/lost.txt', bytes))).unchanged).toBe(true);
    // An operator (or a lifecycle rule) removes the blob from the origin.
    await emulators.s3.send(
      new DeleteObjectCommand({ Bucket: world.originBucket, Key: `blobs/${sha256Hex(bytes)}` }),
    );
    const again = await api(claim('idem/lost.txt', bytes));
    expect(again.statusCode).toBe(201);
    expect(body(again)).toMatchObject({ status: 'pending', path: 'idem/lost.txt' });
    expect(body(again).unchanged).toBeUndefined();
    // The owner sends them: the upload commits (at the head it already was), and storage has them again.
    await deliver(bytes);
    const upload = await api(httpEvent('GET', `/v1/uploads/${body(again).uploadId}`));
    expect(body(upload)).toMatchObject({ status: 'committed', version: 1 });
    expect(body(await api(claim('idem/lost.txt', bytes))).unchanged).toBe(true);
  });
});

describe('the key on the ledger (core)', () => {
  let offsetMs = 0;
  const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
  const deps = () => ({ ledger: world.ledger, clock });
  const ok = (n: number) => async () => ({ statusCode: 201, body: { n } });

  it('a retry while the first request runs is told to come back later (409), then gets its answer', async () => {
    const key = crypto.randomUUID();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = runOnce(deps(), key, { route: 'r', a: 1 }, async () => {
      await gate;
      return { statusCode: 201, body: { n: 1 } };
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(runOnce(deps(), key, { route: 'r', a: 1 }, ok(2))).rejects.toMatchObject({
      status: 409,
      code: 'idempotency_in_progress',
      field: 'Idempotency-Key',
    });
    release();
    expect(await first).toEqual({ statusCode: 201, body: { n: 1 }, replayed: false });
    expect(await runOnce(deps(), key, { route: 'r', a: 1 }, ok(3))).toEqual({
      statusCode: 201,
      body: { n: 1 },
      replayed: true,
    });
  });

  it('a failed request frees its key: the retry runs afresh', async () => {
    const key = crypto.randomUUID();
    await expect(
      runOnce(deps(), key, { route: 'r' }, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await runOnce(deps(), key, { route: 'r' }, ok(2))).toMatchObject({
      body: { n: 2 },
      replayed: false,
    });
  });

  it('a claim whose request died is taken over after the lock; a key is forgotten after 24 h', async () => {
    const key = crypto.randomUUID();
    // A request that never finishes (its Lambda was killed).
    void runOnce(deps(), key, { route: 'r' }, () => new Promise(() => undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));
    offsetMs = IDEMPOTENCY_LOCK_MS + 1000;
    expect(await runOnce(deps(), key, { route: 'r' }, ok(2))).toMatchObject({
      body: { n: 2 },
      replayed: false,
    });
    offsetMs = IDEMPOTENCY_LOCK_MS + IDEMPOTENCY_KEY_TTL_MS - 60_000;
    expect(await runOnce(deps(), key, { route: 'other' }, ok(3)).catch((e) => e.code)).toBe(
      'idempotency_key_reused',
    );
    offsetMs = IDEMPOTENCY_LOCK_MS + IDEMPOTENCY_KEY_TTL_MS + 60_000;
    expect(await runOnce(deps(), key, { route: 'other' }, ok(4))).toMatchObject({
      body: { n: 4 },
      replayed: false,
    });
    offsetMs = 0;
  });
});
