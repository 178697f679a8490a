/**
 * The CLI's API transport (cli/api-transport.ts: node-fetch over node:http instead of Node's
 * fetch) behind the one API client, against a loopback server: what the client relies on from
 * fetch holds here too (the request as sent, redirects read by hand, the caller's abort reason, a
 * timeout and a refused connection told apart).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiFetch } from '../../../cli/api-transport.ts';
import { MirrorApi } from '../../../web/client/api.ts';
import { ApiError } from '../../../web/client/errors.ts';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** The routes the tests ask for; anything else hangs, as a stalled network would. */
function answer(request: Seen, res: ServerResponse): void {
  if (request.url === '/v1/health') sendJson(res, 200, { status: 'ok', time: '2030-01-01T00:00:00Z' });
  else if (request.url.startsWith('/v1/files/a.txt/content')) {
    res.writeHead(302, { location: 'http://127.0.0.1:9/bucket/blob?X-Amz-Signature=x' }).end();
  } else if (request.method === 'POST' && request.url === '/v1/uploads') {
    sendJson(res, 400, { error: { code: 'invalid', message: 'refused here' } });
  } else if (request.url === '/v1/health/moved') {
    res.writeHead(302, { location: '/v1/health' }).end();
  } else if (request.url.startsWith('/v1/elsewhere/')) {
    res.writeHead(302, { location: decodeURIComponent(request.url.slice('/v1/elsewhere/'.length)) }).end();
  } else if (request.url === '/v1/files/a.txt') {
    sendJson(res, 404, { error: { code: 'not_found', message: 'no such file' } });
  }
}

describe('the CLI API transport (node:http)', () => {
  let server: Server;
  let baseUrl = '';
  const seen: Seen[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const request = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        };
        seen.push(request);
        answer(request, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const client = (options: { timeoutMs?: number; base?: string } = {}) =>
    new MirrorApi({
      baseUrl: options.base ?? baseUrl,
      token: 'tok',
      fetch: apiFetch,
      retries: 0,
      timeoutMs: options.timeoutMs,
    });

  it('sends the method, headers and JSON body, and parses the answer', async () => {
    seen.length = 0;
    expect(await client().health()).toEqual({ status: 'ok', time: '2030-01-01T00:00:00Z' });
    const error = await client()
      .createUpload({ path: 'a.txt', sha256: 'a'.repeat(64), size: 1, contentType: 'text/plain' })
      .catch((e: unknown) => e);
    expect((error as ApiError).status).toBe(400);
    const post = seen.find((s) => s.method === 'POST');
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/v1/health' });
    expect(seen[0]?.headers.authorization).toBe('Bearer tok');
    expect(post?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(post?.body ?? '{}')).toMatchObject({ path: 'a.txt', size: 1 });
  }, 10_000);

  it("an error answer keeps its status and the API's code", async () => {
    const error = await client()
      .getFile('a.txt')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(404);
    expect((error as ApiError).code).toBe('not_found');
  });

  it('reads the content link from the 302 and never follows it', async () => {
    seen.length = 0;
    expect(await client().contentUrl('a.txt')).toBe('http://127.0.0.1:9/bucket/blob?X-Amz-Signature=x');
    expect(seen).toHaveLength(1);
  });

  it('a redirect to another origin (another port of the same host) drops the token; one to the same origin keeps it', async () => {
    const other: IncomingMessage['headers'][] = [];
    const elsewhere = createServer((req, res) => {
      other.push(req.headers);
      sendJson(res, 200, { status: 'ok', time: '2030-01-01T00:00:00Z' });
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    try {
      const target = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/v1/health`;
      const moved = await apiFetch(`${baseUrl}/v1/elsewhere/${encodeURIComponent(target)}`, {
        headers: { authorization: 'Bearer tok', accept: 'application/json' },
      });
      expect(moved.status).toBe(200);
      expect(other).toHaveLength(1);
      expect(other[0]?.authorization).toBeUndefined();
      expect(other[0]?.accept).toBe('application/json');
      seen.length = 0;
      const same = await apiFetch(`${baseUrl}/v1/health/moved`, { headers: { authorization: 'Bearer tok' } });
      expect(same.status).toBe(200);
      expect(seen.map((r) => [r.url, r.headers.authorization])).toEqual([
        ['/v1/health/moved', 'Bearer tok'],
        ['/v1/health', 'Bearer tok'],
      ]);
    } finally {
      elsewhere.closeAllConnections();
      await new Promise((resolve) => elsewhere.close(resolve));
    }
  });

  it("a caller's abort ends the request with the caller's reason", async () => {
    const caller = new AbortController();
    const reason = new Error('user cancelled');
    const call = client().limits({ signal: caller.signal });
    setTimeout(() => caller.abort(reason), 50);
    await expect(call).rejects.toBe(reason);
  });

  it('a stalled request ends at timeoutMs as a transient "timed out"', async () => {
    const error = await client({ timeoutMs: 100 })
      .limits()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).transient).toBe(true);
    expect((error as ApiError).message).toMatch(/timed out/);
  });

  it('a refused connection names the socket error', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const error = await client({ base: `http://127.0.0.1:${port}` })
      .health()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).transient).toBe(true);
    expect((error as ApiError).message).toMatch(/cannot reach the API .*ECONNREFUSED/);
  });
});
