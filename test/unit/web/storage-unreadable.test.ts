/**
 * A file changed after it was hashed, read by fetch as a file-backed Blob while it is PUT: the
 * failure is the file's, not the network's. It ends the upload at once as `file_unreadable`
 * (docs/cli.md's exit code for it), instead of five retries and "could not reach storage"
 * (probe 11, U5). Real fetch, a real file, a real HTTP server.
 */
import { openAsBlob } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../../web/client/errors.ts';
import { fetchPutter } from '../../../web/client/upload/storage.ts';

let dir: string;
let server: Server;
let url: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'storage-unreadable-'));
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { etag: '"e"' }).end());
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bucket/key`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('fetchPutter and a file that changed', () => {
  it('a file changed after it was opened ends the PUT as file_unreadable, not worth a retry', async () => {
    const file = join(dir, 'changing.bin');
    await writeFile(file, Buffer.alloc(64 * 1024, 1));
    const blob = await openAsBlob(file);
    await appendFile(file, Buffer.alloc(1024, 2));
    const put = fetchPutter(fetch);
    const failure = await put(url, {}, blob, new AbortController().signal, () => undefined).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ code: 'file_unreadable', transient: false });
    expect((failure as Error).message).toMatch(/cannot read the file/);
  });

  it('an unchanged file is sent whole', async () => {
    const file = join(dir, 'steady.bin');
    await writeFile(file, Buffer.alloc(64 * 1024, 3));
    const answer = await fetchPutter(fetch)(
      url,
      {},
      await openAsBlob(file),
      new AbortController().signal,
      () => undefined,
    );
    expect(answer).toMatchObject({ status: 200, etag: '"e"' });
  });
});
