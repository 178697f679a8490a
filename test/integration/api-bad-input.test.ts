/**
 * The API handler against the emulators: every rejection names its field and
 * status, and writes nothing (invariant 8).
 */
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitVersion, folderRuleFor } from '../../functions/core/commit.js';
import { httpEvent, lambdaContext } from '../support/api-events.js';
import { makeWorld, sha256Hex, type World, worldApi } from '../support/domain.js';
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
    limits: { maxUploadBytes: 10 * 1024 * 1024, contentTypes: ['image/*', 'text/plain'] },
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

const sha = sha256Hex('hello');
const valid = { path: 'media/ok.png', size: 5, sha256: sha, contentType: 'image/png' };
const post = (body: unknown) => httpEvent('POST', '/v1/uploads', { body });
const enc = encodeURIComponent;

const cases: { name: string; event: APIGatewayProxyEventV2; status: number; field: string }[] = [
  {
    name: 'body is not JSON',
    event: httpEvent('POST', '/v1/uploads', { rawBody: '{"path":' }),
    status: 400,
    field: 'body',
  },
  { name: 'no body', event: httpEvent('POST', '/v1/uploads'), status: 400, field: 'body' },
  { name: 'body is an array', event: post([valid]), status: 400, field: 'body' },
  { name: 'unknown field', event: post({ ...valid, colour: 'red' }), status: 400, field: 'colour' },
  { name: 'path missing', event: post({ ...valid, path: undefined }), status: 400, field: 'path' },
  { name: 'path is a number', event: post({ ...valid, path: 7 }), status: 400, field: 'path' },
  { name: 'path empty', event: post({ ...valid, path: '' }), status: 400, field: 'path' },
  { name: 'path absolute', event: post({ ...valid, path: '/etc/passwd' }), status: 400, field: 'path' },
  { name: 'path with ..', event: post({ ...valid, path: 'a/../b.png' }), status: 400, field: 'path' },
  { name: 'path with .', event: post({ ...valid, path: 'a/./b.png' }), status: 400, field: 'path' },
  {
    name: 'path with a zero-width space (shown as ab.png)',
    event: post({ ...valid, path: 'a\u200bb.png' }),
    status: 400,
    field: 'path',
  },
  {
    name: 'path with a division slash (shown as a/b.png)',
    event: post({ ...valid, path: 'a\u2215b.png' }),
    status: 400,
    field: 'path',
  },
  {
    name: 'path with a right-to-left override (shown as invoiceexe.png)',
    event: post({ ...valid, path: 'invoice\u202egnp.exe' }),
    status: 400,
    field: 'path',
  },
  {
    name: 'path with empty segment',
    event: post({ ...valid, path: 'a//b.png' }),
    status: 400,
    field: 'path',
  },
  { name: 'path with trailing slash', event: post({ ...valid, path: 'a/b/' }), status: 400, field: 'path' },
  { name: 'path with backslash', event: post({ ...valid, path: 'a\\b.png' }), status: 400, field: 'path' },
  { name: 'path with NUL', event: post({ ...valid, path: 'a\u0000b.png' }), status: 400, field: 'path' },
  { name: 'path with newline', event: post({ ...valid, path: 'a\nb.png' }), status: 400, field: 'path' },
  {
    name: 'path with lone surrogate',
    event: post({ ...valid, path: 'a\ud800.png' }),
    status: 400,
    field: 'path',
  },
  {
    name: 'path over the key length',
    event: post({ ...valid, path: `${'é'.repeat(600)}.png` }),
    status: 400,
    field: 'path',
  },
  { name: 'size negative', event: post({ ...valid, size: -1 }), status: 400, field: 'size' },
  { name: 'size fractional', event: post({ ...valid, size: 1.5 }), status: 400, field: 'size' },
  { name: 'size as string', event: post({ ...valid, size: '5' }), status: 400, field: 'size' },
  {
    name: 'size over the limit',
    event: post({ ...valid, size: 10 * 1024 * 1024 + 1 }),
    status: 413,
    field: 'size',
  },
  { name: 'sha256 too short', event: post({ ...valid, sha256: sha.slice(1) }), status: 400, field: 'sha256' },
  {
    name: 'sha256 not hex',
    event: post({ ...valid, sha256: `z${sha.slice(1)}` }),
    status: 400,
    field: 'sha256',
  },
  {
    name: 'sha256 base64',
    event: post({ ...valid, sha256: Buffer.from(sha, 'hex').toString('base64') }),
    status: 400,
    field: 'sha256',
  },
  {
    name: 'contentType malformed',
    event: post({ ...valid, contentType: 'png' }),
    status: 400,
    field: 'contentType',
  },
  {
    name: 'contentType not allowed',
    event: post({ ...valid, contentType: 'application/x-msdownload' }),
    status: 415,
    field: 'contentType',
  },
  { name: 'ifVersion negative', event: post({ ...valid, ifVersion: -1 }), status: 400, field: 'ifVersion' },
  { name: 'ifVersion conflicts', event: post({ ...valid, ifVersion: 4 }), status: 409, field: 'ifVersion' },
  {
    name: 'upload id malformed',
    event: httpEvent('GET', '/v1/uploads/..%2F..'),
    status: 400,
    field: 'uploadId',
  },
  {
    name: 'unknown upload',
    event: httpEvent('GET', `/v1/uploads/${'0'.repeat(8)}-0000-0000-0000-000000000000`),
    status: 404,
    field: 'uploadId',
  },
  {
    name: 'file path bad encoding',
    event: httpEvent('GET', '/v1/files/%E0%A4%A'),
    status: 400,
    field: 'path',
  },
  {
    name: 'file path escapes',
    event: httpEvent('GET', `/v1/files/${enc('../x')}`),
    status: 400,
    field: 'path',
  },
  {
    name: 'file not found',
    event: httpEvent('GET', `/v1/files/${enc('no/such.png')}`),
    status: 404,
    field: 'path',
  },
  {
    name: 'delete of a missing file',
    event: httpEvent('DELETE', `/v1/files/${enc('no/such.png')}`),
    status: 404,
    field: 'path',
  },
  {
    name: 'changes: bad cursor',
    event: httpEvent('GET', '/v1/changes', { query: { cursor: 'not-a-cursor' } }),
    status: 400,
    field: 'cursor',
  },
  {
    name: 'changes: a cursor past the feed (kept across a ledger restore, or made up)',
    event: httpEvent('GET', '/v1/changes', {
      query: {
        cursor: Buffer.from(JSON.stringify({ v: 1, s: [999_999, 999_999, 999_999, 999_999] })).toString(
          'base64url',
        ),
      },
    }),
    status: 400,
    field: 'cursor',
  },
  {
    name: 'changes: limit 0',
    event: httpEvent('GET', '/v1/changes', { query: { limit: '0' } }),
    status: 400,
    field: 'limit',
  },
  {
    name: 'changes: limit not a number',
    event: httpEvent('GET', '/v1/changes', { query: { limit: 'many' } }),
    status: 400,
    field: 'limit',
  },
  // `limit` is a whole number from 1 to 1000, written in digits, as every other number in a query
  // (probe api2, A2-7: `0x3`, `1e1`, ` 2` and `2.0` were read as numbers).
  ...['0x3', '1e1', ' 2', '2.0', '', '1001', '99999999999999999999'].map((limit) => ({
    name: `files: limit ${JSON.stringify(limit)}`,
    event: httpEvent('GET', '/v1/files', { query: { limit } }),
    status: 400,
    field: 'limit',
  })),
  {
    name: 'files: a cursor returned for a prefix, sent with none (probe api2, A2-6)',
    event: httpEvent('GET', '/v1/files', {
      query: {
        cursor: Buffer.from(JSON.stringify({ v: 1, p: 'photos/', a: 'photos/x.png' })).toString('base64url'),
      },
    }),
    status: 400,
    field: 'cursor',
  },
  {
    name: 'versions: before not a number',
    event: httpEvent('GET', `/v1/files/${enc('a.png')}/versions`, { query: { before: 'x' } }),
    status: 400,
    field: 'before',
  },
  // A misspelt parameter is refused, never ignored: a typo must not turn a conditional delete into
  // an unconditional one.
  ...(
    [
      ['DELETE', `/v1/files/${enc('no/such.png')}`, 'ifversion'],
      ['GET', '/v1/files', 'prefx'],
      ['GET', '/v1/changes', 'limt'],
      ['GET', `/v1/files/${enc('a.png')}/versions`, 'befor'],
      // Read as "no version" or "no target", these would redirect to other bytes than asked for.
      ['GET', `/v1/files/${enc('a.png')}/content`, 'Version'],
      ['GET', `/v1/files/${enc('a.png')}/content`, 'versionId'],
      ['GET', `/v1/files/${enc('a.png')}/content`, 'Target'],
      // Routes that take no query parameter refuse one too: a restore or a claim sent with
      // `?ifVersion=` (DELETE's convention) committed unconditionally, and `GET /v1/files/{path}
      // ?version=1` answered the head (probe api2, A2-2).
      ['POST', `/v1/files/${enc('a.png')}/versions`, 'ifVersion', { from: 1 }],
      ['POST', '/v1/uploads', 'ifVersion', valid],
      ['GET', `/v1/files/${enc('a.png')}`, 'version'],
      ['GET', '/v1/limits', 'x'],
      ['GET', '/v1/targets', 'x'],
      ['GET', '/v1/health', 'x'],
      ['GET', `/v1/uploads/${'0'.repeat(8)}-0000-0000-0000-000000000000`, 'x'],
      ['DELETE', `/v1/uploads/${'0'.repeat(8)}-0000-0000-0000-000000000000`, 'ifVersion'],
    ] as const
  ).map(([method, path, param, body]) => ({
    name: `${method} ${path}: an unknown query parameter (${param})`,
    event: httpEvent(method, path, { query: { [param]: '1' }, ...(body ? { body } : {}) }),
    status: 400,
    field: param,
  })),
  // Bytes that are not UTF-8 inside a JSON string: decoded leniently they would become U+FFFD, and
  // distinct paths one (an overlong "/" or ".", an encoded lone surrogate).
  ...[
    ['a byte 0xFF', [0xff]],
    ['an overlong "/"', [0xc0, 0xaf]],
    ['an overlong "."', [0xe0, 0x80, 0xae]],
    ['an encoded lone surrogate', [0xed, 0xa0, 0x80]],
  ].map(([what, bytes]) => ({
    name: `body: ${what} in the path is not UTF-8`,
    event: {
      ...httpEvent('POST', '/v1/uploads'),
      isBase64Encoded: true,
      body: Buffer.concat([
        Buffer.from(`{"path":"utf/a`),
        Buffer.from(bytes as number[]),
        Buffer.from(`.png","size":5,"sha256":"${sha}","contentType":"image/png"}`),
      ]).toString('base64'),
    },
    status: 400,
    field: 'body',
  })),
  // HTTP's conditional headers are refused on a change, never ignored: a generic client's
  // `If-Match` must not turn a conditional delete into an unconditional one (ifVersion is the rule).
  ...(
    [
      ['DELETE', `/v1/files/${enc('no/such.png')}`, 'if-match', '"1"', undefined],
      ['POST', '/v1/uploads', 'if-none-match', '*', valid],
      [
        'POST',
        `/v1/files/${enc('a.png')}/restore`,
        'if-unmodified-since',
        'Tue, 01 Jan 2030 00:00:00 GMT',
        { version: 1 },
      ],
    ] as const
  ).map(([method, path, header, value, body]) => ({
    name: `${method} ${path}: a conditional header (${header})`,
    event: httpEvent(method, path, { headers: { [header]: value }, ...(body ? { body } : {}) }),
    status: 400,
    field: header,
  })),
  // A change that takes no body refuses one that says something: `{"ifVersion": 1}` sent to
  // DELETE (ifVersion goes in its query) was ignored and the delete ran unconditionally (probe API-3).
  ...(
    [
      ['DELETE', `/v1/files/${enc('no/such.png')}`, { ifVersion: 1 }, 'ifVersion'],
      ['DELETE', `/v1/uploads/${'0'.repeat(8)}-0000-0000-0000-000000000000`, { reason: 'x' }, 'reason'],
      ['POST', `/v1/uploads/${'0'.repeat(8)}-0000-0000-0000-000000000000/complete`, { parts: [] }, 'parts'],
      ['DELETE', `/v1/files/${enc('no/such.png')}`, [1], 'body'],
    ] as const
  ).map(([method, path, body, field]) => ({
    name: `${method} ${path}: a body on a route that takes none (${JSON.stringify(body)})`,
    event: httpEvent(method, path, { body }),
    status: 400,
    field,
  })),
  {
    name: 'DELETE a file: a body that is not JSON',
    event: httpEvent('DELETE', `/v1/files/${enc('no/such.png')}`, { rawBody: 'ifVersion=1' }),
    status: 400,
    field: 'body',
  },
  {
    name: 'content: unknown target',
    event: httpEvent('GET', `/v1/files/${enc('no/such.png')}/content`, { query: { target: 'nope' } }),
    status: 404,
    field: 'path',
  },
];

describe('API rejects bad input with a clear error and writes nothing', () => {
  it.each(cases)('$name → $status ($field)', async ({ event, status, field }) => {
    const before = await snapshot();
    const response = await api(event);
    expect(response.statusCode).toBe(status);
    const body = JSON.parse(response.body as string);
    expect(body.error.field).toBe(field);
    expect(body.error.code).toEqual(expect.any(String));
    expect(body.error.message.length).toBeGreaterThan(5);
    expect(await snapshot()).toEqual(before);
  });

  it('a delete with a body naming ifVersion is refused and deletes nothing; an empty body or {} is no condition', async () => {
    const path = 'no-body/a.png';
    for (const [i, content] of ['one', 'two'].entries()) {
      await commitVersion(world.deps, {
        folderRule: await folderRuleFor(world.deps, path),
        uploadId: `seed-${i}`,
        path,
        sha256: sha256Hex(content),
        size: content.length,
        contentType: 'image/png',
        deleted: false,
      });
    }
    const refused = await api(httpEvent('DELETE', `/v1/files/${enc(path)}`, { body: { ifVersion: 1 } }));
    expect(refused.statusCode).toBe(400);
    const error = JSON.parse(refused.body as string).error;
    expect(error).toMatchObject({ code: 'invalid', field: 'ifVersion' });
    expect(error.message).toContain('query');
    expect((await world.ledger.getHead(path))?.version).toBe(2);
    // What clients send for "no parameters" (the web client's complete sends {}) still goes through.
    const deleted = await api(httpEvent('DELETE', `/v1/files/${enc(path)}`, { body: {} }));
    expect(deleted.statusCode).toBe(200);
    expect((await world.ledger.getHead(path))?.deleted).toBe(true);
  });

  it('an unknown route is a 404 with a code', async () => {
    const response = await api(httpEvent('GET', '/v1/nothing'));
    expect(response.statusCode).toBe(404);
    expect(JSON.parse(response.body as string).error.code).toBe('no_route');
  });

  it('a valid upload is accepted with a presigned PUT binding length, type, checksum and the upload', async () => {
    const response = await api(post(valid));
    expect(response.statusCode).toBe(201);
    const body = JSON.parse(response.body as string);
    expect(body.status).toBe('pending');
    const url = new URL(body.upload.url);
    expect(url.pathname).toBe(`/${world.originBucket}/blobs/${sha}`);
    expect(url.searchParams.get('X-Amz-SignedHeaders')?.split(';').sort()).toEqual(
      ['content-length', 'content-type', 'host', 'x-amz-checksum-sha256', 'x-amz-meta-mirror-upload'].sort(),
    );
    expect(Number(url.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(900);
    // No empty-body CRC32 smuggled into the URL (docs/platform.md).
    expect([...url.searchParams.keys()].filter((k) => k.toLowerCase().startsWith('x-amz-checksum'))).toEqual(
      [],
    );
    // What the uploader must send; the length (and host) the HTTP client sets itself, apart.
    expect(body.upload.automaticHeaders).toEqual({ 'content-length': '5', host: url.host });
    expect(body.upload.headers).toEqual({
      'content-type': 'image/png',
      'x-amz-checksum-sha256': Buffer.from(sha, 'hex').toString('base64'),
      // The stored object names the upload that sent it: the ingest commits that upload only.
      'x-amz-meta-mirror-upload': body.uploadId,
    });
    expect(Date.parse(body.upload.expiresAt) - Date.now()).toBeLessThanOrEqual(900_000);
  });

  it('a content type is case-insensitive (RFC 9110): stored and signed lower-cased', async () => {
    const response = await api(post({ ...valid, path: 'media/upper.png', contentType: 'Image/PNG' }));
    expect(response.statusCode).toBe(201);
    const body = JSON.parse(response.body as string);
    expect(body.upload.headers['content-type']).toBe('image/png');
    const record = await api(httpEvent('GET', `/v1/uploads/${body.uploadId}`));
    expect(JSON.parse(record.body as string).contentType).toBe('image/png');
  });
});
