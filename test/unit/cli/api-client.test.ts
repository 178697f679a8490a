import { describe, expect, it } from 'vitest';
import { type FetchLike, MirrorApiClient, toApiError } from '../../../cli/api-client.ts';
import { ApiError, ApiResponseError, ApiUnreachableError, MirrorCliError } from '../../../cli/errors.ts';

interface Seen {
  url: string;
  method: string | undefined;
  headers: Record<string, string>;
  body: unknown;
}

function fakeFetch(status: number, body: unknown): { fetch: FetchLike; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch: FetchLike = async (url, init) => {
    seen.push({
      url,
      method: init.method,
      headers: init.headers as Record<string, string>,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    });
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return new Response(status === 204 ? null : text, {
      status,
      headers: { 'content-type': 'application/json' },
    });
  };
  return { fetch, seen };
}

const client = (fetch: FetchLike, baseUrl = 'http://127.0.0.1:8787/') =>
  new MirrorApiClient({ baseUrl, token: 'tok', fetch });

describe('MirrorApiClient', () => {
  it('createUpload POSTs the declaration with the bearer token, ifVersion only when given', async () => {
    const { fetch, seen } = fakeFetch(201, {
      status: 'pending',
      uploadId: 'u-1',
      path: 'a/b.jpg',
      upload: {
        method: 'PUT',
        url: 'http://s3/blobs/x?sig=1',
        headers: { 'content-length': '3' },
        expiresAt: 'x',
      },
    });
    const res = await client(fetch).createUpload({
      path: 'a/b.jpg',
      size: 3,
      sha256: 'ABCDEF',
      contentType: 'image/jpeg',
    });
    expect(res.status).toBe('pending');
    expect(seen[0]).toEqual({
      url: 'http://127.0.0.1:8787/v1/uploads',
      method: 'POST',
      headers: {
        authorization: 'Bearer tok',
        accept: 'application/json',
        'content-type': 'application/json',
      },
      body: { path: 'a/b.jpg', size: 3, sha256: 'abcdef', contentType: 'image/jpeg' },
    });

    const dedup = fakeFetch(200, {
      status: 'committed',
      path: 'a/b.jpg',
      version: 2,
      deduplicated: true,
      uploadId: 'u',
    });
    await client(dedup.fetch).createUpload({
      path: 'p',
      size: 1,
      sha256: 'ab',
      contentType: 't',
      ifVersion: 0,
    });
    expect(dedup.seen[0]?.body).toMatchObject({ ifVersion: 0 });
  });

  it('getFile encodes the whole path as one segment, keeping a base path prefix', async () => {
    const { fetch, seen } = fakeFetch(200, {
      path: 'images/2024/a b#1.jpg',
      head: {
        version: 1,
        sha256: 'ab',
        size: 1,
        contentType: 'image/jpeg',
        committedAt: 'x',
        deleted: false,
      },
      targets: [],
    });
    await client(fetch, 'https://api.example.com/prod').getFile('images/2024/a b#1.jpg');
    expect(seen[0]?.url).toBe('https://api.example.com/prod/v1/files/images%2F2024%2Fa%20b%231.jpg');
    expect(seen[0]?.method).toBe('GET');
  });

  it('getUpload, listTargets and health hit their routes', async () => {
    const up = fakeFetch(200, { uploadId: 'u/1', status: 'committed', path: 'p', version: 4 });
    expect((await client(up.fetch).getUpload('u/1')).version).toBe(4);
    expect(up.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/uploads/u%2F1');

    const t = fakeFetch(200, { targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }] });
    expect((await client(t.fetch).listTargets()).targets[0]?.id).toBe('eu-west-1');
    expect(t.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/targets');

    const h = fakeFetch(200, { status: 'ok', queues: { ingest: 0 } });
    expect(await client(h.fetch).health()).toEqual({ status: 'ok', queues: { ingest: 0 } });
    expect(h.seen[0]?.url).toBe('http://127.0.0.1:8787/v1/health');
  });

  it('maps {error:{code,message,field}} to ApiError with status, code and field', async () => {
    const { fetch } = fakeFetch(400, {
      error: { code: 'invalid_path', message: 'must be relative', field: 'path' },
    });
    const err = await client(fetch)
      .createUpload({ path: '/x', size: 1, sha256: 'ab', contentType: 't' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toBeInstanceOf(MirrorCliError);
    const apiErr = err as ApiError;
    expect(apiErr).toMatchObject({ status: 400, code: 'invalid_path', field: 'path', exitCode: 1 });
    expect(apiErr.message).toBe('error 400 invalid_path: must be relative (field: path)');
    expect(apiErr.cause).toEqual({
      error: { code: 'invalid_path', message: 'must be relative', field: 'path' },
    });
  });

  it('maps errors without a field, and bodies that are not the error shape', () => {
    expect(
      toApiError(404, 'Not Found', '{"error":{"code":"not_found","message":"no such path"}}').message,
    ).toBe('error 404 not_found: no such path');
    const html = toApiError(502, 'Bad Gateway', '<html>\n  <body>upstream died</body></html>');
    expect(html).toMatchObject({ status: 502, code: 'http_502', field: undefined, retryable: true });
    expect(html.message).toBe('error 502 http_502: <html> <body>upstream died</body></html>');
    expect(toApiError(500, 'Internal Server Error', '').message).toBe(
      'error 500 http_500: Internal Server Error',
    );
  });

  it('reports a 2xx body of the wrong shape, naming the field', async () => {
    const { fetch } = fakeFetch(200, { uploadId: 'u', status: 'weird', path: 'p' });
    const err = await client(fetch)
      .getUpload('u')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiResponseError);
    expect((err as Error).message).toMatch(/^GET \/v1\/uploads\/u: unexpected response 200: status: /);
  });

  it('reports an unreachable API with the socket error and a hint for the local stack', async () => {
    const refused: FetchLike = async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
      });
    };
    const err = await client(refused)
      .listTargets()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiUnreachableError);
    expect((err as Error).message).toBe(
      'cannot reach the API at http://127.0.0.1:8787 (GET /v1/targets): ECONNREFUSED; ' +
        'is the local stack running (npm start)?',
    );
  });
});
