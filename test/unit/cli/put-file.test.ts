// The real PUT against an in-process HTTP server on loopback (no outside network):
// proves the body goes out with the signed content-length, not chunked.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadPutError } from '../../../cli/errors.ts';
import { createPutFile, describeStorageError, redactUrl } from '../../../cli/put-file.ts';

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  sha256: string;
  bytes: number;
}

let dir: string;
let file: string;
let data: Buffer;
let server: Server;
let base: string;
const received: Received[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-put-'));
  data = randomBytes(3 * 1024 * 1024 + 7);
  file = join(dir, 'clip.mp4');
  await writeFile(file, data);
  server = createServer(async (req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    received.push({
      method: req.method,
      url: req.url,
      headers: req.headers,
      sha256: hash.digest('hex'),
      bytes,
    });
    if (req.url?.startsWith('/denied')) {
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>',
      );
      return;
    }
    res.writeHead(200);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('createPutFile', () => {
  const headers = () => ({
    'content-type': 'video/mp4',
    'x-amz-checksum-sha256': createHash('sha256').update(data).digest('base64'),
  });

  it('streams the file with exactly the given headers and a fixed length, counting bytes', async () => {
    received.length = 0;
    const progress: number[] = [];
    await createPutFile()({
      url: `${base}/blobs/abc?X-Amz-Signature=secret`,
      headers: headers(),
      file,
      size: data.length,
      onBytes: (n) => progress.push(n),
    });
    const got = received[0];
    expect(got?.method).toBe('PUT');
    expect(got?.url).toBe('/blobs/abc?X-Amz-Signature=secret');
    expect(got?.headers['content-length']).toBe(String(data.length));
    expect(got?.headers['content-type']).toBe('video/mp4');
    expect(got?.headers['x-amz-checksum-sha256']).toBe(headers()['x-amz-checksum-sha256']);
    expect(got?.headers['transfer-encoding']).toBeUndefined();
    expect(got?.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(got?.bytes).toBe(data.length);
    expect(progress.at(-1)).toBe(data.length);
    expect(progress.length).toBeGreaterThan(1);
  });

  it('a non-2xx answer is an error with the status and storage code, without the signature', async () => {
    const err = await createPutFile()({
      url: `${base}/denied/abc?X-Amz-Signature=secret`,
      headers: headers(),
      file,
      size: data.length,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadPutError);
    expect((err as UploadPutError).status).toBe(403);
    expect((err as Error).message).toBe(
      'upload PUT failed: 403 SignatureDoesNotMatch: The request signature we calculated does not match',
    );
    expect((err as Error).message).not.toContain('secret');
  });

  it('refuses when the signed length does not match the file', async () => {
    await expect(
      createPutFile()({
        url: `${base}/x`,
        headers: headers(),
        automaticHeaders: { 'content-length': '5', host: new URL(base).host },
        file,
        size: data.length,
      }),
    ).rejects.toThrow(/signed for 5 bytes/);
  });

  it('reports a refused connection', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(
      createPutFile()({
        url: `http://127.0.0.1:${port}/x?sig=s`,
        headers: headers(),
        file,
        size: data.length,
      }),
    ).rejects.toThrow(new RegExp(`^upload PUT to http://127.0.0.1:${port}/x failed: .*ECONNREFUSED`));
  });

  it('helpers: redactUrl drops the query, describeStorageError falls back to the body', () => {
    expect(redactUrl('https://b.s3.amazonaws.com/blobs/x?X-Amz-Signature=s')).toBe(
      'https://b.s3.amazonaws.com/blobs/x',
    );
    expect(describeStorageError('', 'Forbidden')).toBe('Forbidden');
    expect(describeStorageError(' plain\n text ', undefined)).toBe('plain text');
  });
});
