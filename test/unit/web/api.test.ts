/** The one API client (web/client/api.ts): routes, auth, Idempotency-Key, answers checked against the contract, errors. */
import { describe, expect, it } from 'vitest';
import { type FetchLike, MirrorApi } from '../../../web/client/api.ts';
import { ApiError } from '../../../web/client/errors.ts';

interface Seen {
  url: string;
  method: string | undefined;
  headers: Record<string, string>;
  body: unknown;
}

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

function fakeFetch(...answers: Answer[]): { fetch: FetchLike; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch: FetchLike = async (url, init) => {
    seen.push({
      url,
      method: init.method,
      headers: init.headers as Record<string, string>,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    });
    const { status, body, headers } = answers[Math.min(seen.length, answers.length) - 1] as Answer;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return new Response(text, { status, headers: { 'content-type': 'application/json', ...headers } });
  };
  return { fetch, seen };
}

const client = (fetch: FetchLike, baseUrl = 'http://127.0.0.1:8787/') =>
  new MirrorApi({ baseUrl, token: 'tok', fetch, backoff: { baseMs: 1, maxMs: 2 } });

const later = '2030-01-01T00:15:00Z';
const pending = {
  status: 'pending',
  uploadId: 'u-1',
  path: 'a/b.jpg',
  upload: {
    method: 'PUT',
    url: 'http://s3.test/blobs/x?sig=1',
    headers: {
      'content-type': 'image/jpeg',
      'x-amz-checksum-sha256': `${'A'.repeat(43)}=`,
    },
    automaticHeaders: { 'content-length': '3', host: 's3.test' },
    expiresAt: later,
  },
  challenge: { nonce: 'bm9uY2U=', ranges: [{ offset: 0, length: 3 }], expiresAt: later },
};

describe('MirrorApi', () => {
  it('createUpload POSTs the declaration with the bearer token and an Idempotency-Key, ifVersion only when given', async () => {
    const { fetch, seen } = fakeFetch({ status: 201, body: pending });
    const res = await client(fetch).createUpload(
      { path: 'a/b.jpg', size: 3, sha256: 'AB'.repeat(32), contentType: 'image/jpeg' },
      { idempotencyKey: 'key-1' },
    );
    expect(res.status).toBe('pending');
    expect(seen[0]).toEqual({
      url: 'http://127.0.0.1:8787/v1/uploads',
      method: 'POST',
      headers: {
        'idempotency-key': 'key-1',
        authorization: 'Bearer tok',
        accept: 'application/json',
        'content-type': 'application/json',
      },
      body: { path: 'a/b.jpg', size: 3, sha256: 'ab'.repeat(32), contentType: 'image/jpeg' },
    });

    const again = fakeFetch({ status: 201, body: pending });
    await client(again.fetch).createUpload({
      path: 'p',
      size: 1,
      sha256: 'ab'.repeat(32),
      contentType: 'a/b',
      ifVersion: 0,
    });
    expect(again.seen[0]?.body).toMatchObject({ ifVersion: 0 });
    expect(again.seen[0]?.headers['idempotency-key']).toMatch(/^[0-9a-f-]{32,36}$/);
  });

  it('retries a claim that failed in transit (5xx, "still in progress") with the same Idempotency-Key', async () => {
    const { fetch, seen } = fakeFetch(
      { status: 503, body: { message: 'Service Unavailable' } },
      {
        status: 409,
        body: { error: { code: 'idempotency_in_progress', message: 'still running' } },
        headers: { 'retry-after': '0' },
      },
      { status: 201, body: pending },
    );
    await client(fetch).createUpload({
      path: 'a/b.jpg',
      size: 3,
      sha256: 'ab'.repeat(32),
      contentType: 'image/jpeg',
    });
    const keys = seen.map((s) => s.headers['idempotency-key']);
    expect(keys).toHaveLength(3);
    expect(new Set(keys).size).toBe(1);
  });

  it('getFile encodes the whole path as one segment, keeping a base path prefix', async () => {
    const { fetch, seen } = fakeFetch({
      status: 200,
      body: {
        path: 'images/2024/a b#1.jpg',
        head: {
          version: 1,
          sha256: 'ab'.repeat(32),
          size: 1,
          contentType: 'image/jpeg',
          committedAt: later,
          deleted: false,
        },
        targets: [],
      },
    });
    await client(fetch, 'https://api.example.com/prod').getFile('images/2024/a b#1.jpg');
    expect(seen[0]?.url).toBe('https://api.example.com/prod/v1/files/images%2F2024%2Fa%20b%231.jpg');
    expect(seen[0]?.method).toBe('GET');
  });

  it('getUpload, listTargets, listChanges and health hit their routes', async () => {
    const upload = {
      uploadId: 'u1',
      status: 'committed',
      path: 'p',
      sha256: 'ab'.repeat(32),
      size: 1,
      contentType: 'a/b',
      version: 4,
      createdAt: later,
      updatedAt: later,
    };
    const up = fakeFetch({ status: 200, body: upload });
    expect((await client(up.fetch).getUpload('u1')).version).toBe(4);
    expect(up.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/uploads/u1');

    const lag = { lagSeconds: 0, pending: 0, pendingCapped: false };
    const t = fakeFetch({ status: 200, body: { targets: [{ id: 'eu-west-1', kind: 's3', lag }] } });
    expect((await client(t.fetch).listTargets()).targets[0]?.id).toBe('eu-west-1');
    expect(t.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/targets');

    const c = fakeFetch({ status: 200, body: { changes: [], cursor: 'c2' } });
    expect((await client(c.fetch).listChanges({ cursor: 'c1', limit: 500 })).cursor).toBe('c2');
    expect(c.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/changes?cursor=c1&limit=500');

    const h = fakeFetch({ status: 200, body: { status: 'ok', time: later } });
    expect(await client(h.fetch).health()).toEqual({ status: 'ok', time: later });
  });

  it('maps {error:{code,message,field}} to an ApiError with status, code and field, not retried', async () => {
    const { fetch, seen } = fakeFetch({
      status: 400,
      body: { error: { code: 'invalid_path', message: 'must be relative', field: 'path' } },
    });
    const err = await client(fetch)
      .createUpload({ path: '/x', size: 1, sha256: 'ab'.repeat(32), contentType: 'a/b' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 400,
      code: 'invalid_path',
      field: 'path',
      message: 'must be relative',
    });
    expect(seen).toHaveLength(1);
  });

  it('a body that is not the error shape: http_<status> and the start of the body', async () => {
    const { fetch } = fakeFetch({ status: 404, body: '<html>\n  <body>gone</body></html>' });
    const err = await client(fetch)
      .getUpload('u')
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, code: 'http_404', message: '<html> <body>gone</body></html>' });
  });

  it('reports a 2xx answer the contract does not allow, naming the field', async () => {
    const { fetch } = fakeFetch({ status: 200, body: { uploadId: 'u', status: 'weird', path: 'p' } });
    const err = await client(fetch)
      .getUpload('u')
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'bad_answer', status: 200 });
    expect((err as Error).message).toMatch(/^GET \/v1\/uploads\/\{id\}: unexpected response 200: .*status/);
  });

  it('reports an unreachable API with the socket error and a hint for the local stack', async () => {
    const refused: FetchLike = async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
      });
    };
    const err = await new MirrorApi({
      baseUrl: 'http://127.0.0.1:8787',
      token: 't',
      fetch: refused,
      retries: 0,
    })
      .listTargets()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'network', status: 0, transient: true });
    expect((err as Error).message).toBe(
      'cannot reach the API at http://127.0.0.1:8787 (GET /v1/targets): ECONNREFUSED; ' +
        'is the local stack running (npm start)?',
    );
  });
});
