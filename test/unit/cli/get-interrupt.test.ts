/**
 * `get` downloads into a hidden temporary file next to the destination: stopped by Ctrl-C
 * (SIGINT) or SIGTERM mid-download, the bin (bin/media-mirror.js, a process of its own) leaves
 * neither that file nor the destination behind, and still ends by the signal. Killed (SIGKILL: no
 * handler runs), it leaves the file, and the next `get` into that folder removes it, leaving another
 * host's and a live process's alone. The API and the storage it points to are one slow local HTTP
 * server: the body of g300.bin never arrives in full; small.bin does.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWatched } from '../../support/spawn-watched.ts';
import { waitFor } from '../../support/wait.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const SIZE = 300 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 7);
const SMALL = Buffer.from('small and whole');

let dir: string;
let server: Server;
let api: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-get-interrupt-'));
  server = createServer((req, res) => {
    if (req.url === '/v1/files/g300.bin') {
      answerFile(res, 'g300.bin', createHash('sha256').update('not these bytes').digest('hex'), SIZE);
    } else if (req.url === '/v1/files/small.bin') {
      answerFile(res, 'small.bin', createHash('sha256').update(SMALL).digest('hex'), SMALL.length);
    } else if (req.url === '/v1/files/small.bin/content') {
      res.writeHead(302, { location: `${api}/small` }).end();
    } else if (req.url === '/small') {
      res.writeHead(200, { 'content-length': String(SMALL.length) }).end(SMALL);
    } else if (req.url === '/v1/files/g300.bin/content') {
      res.writeHead(302, { location: `${api}/blob` }).end();
    } else if (req.url === '/blob') {
      // A chunk at a time, slowly: the download is under way for as long as the test needs.
      res.writeHead(200, { 'content-length': String(SIZE), 'content-type': 'application/octet-stream' });
      res.write(CHUNK);
      const timer = setInterval(() => res.write(CHUNK), 100);
      res.on('close', () => clearInterval(timer));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: `no ${req.url}` } }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const until = <T>(what: string, probe: () => Promise<T | undefined>) => waitFor(what, probe, 60_000);

describe('get interrupted', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`leaves no .mm-get-* file behind on ${signal}, and ends by the signal`, async () => {
      const dest = join(dir, `gdir-${signal}`);
      await mkdir(dest);
      const { child, exited, err } = startGet('g300.bin', dest);
      // The partial file holds bytes: the download is writing to it.
      const temp = await partialFile(dest, err);
      expect(temp).toMatch(new RegExp(`^\\.mm-get-.+-${child.pid}-[0-9a-f]{8}$`));
      child.kill(signal);
      const [code, endedBy] = await exited;
      expect(await readdir(dest)).toEqual([]);
      // Ended by the signal, as an uncaught one ends a process (a shell shows 130 / 143).
      expect({ code, endedBy, err: err() }).toEqual({ code: null, endedBy: signal, err: '' });
    }, 90_000);
  }

  it('killed (SIGKILL), it leaves its partial file; the next get into the folder removes it, not others', async () => {
    const dest = join(dir, 'gdir-SIGKILL');
    await mkdir(dest);
    const killed = startGet('g300.bin', dest);
    const orphan = await partialFile(dest, killed.err);
    killed.child.kill('SIGKILL');
    await killed.exited;
    expect(await readdir(dest)).toEqual([orphan]);
    // Another host's download (the folder shared over the network) and a live process's (this one).
    const others = [
      `.photo.jpg.mm-get-elsewhere.example-${killed.child.pid}-0a0b0c0d`,
      `.photo.jpg.mm-get-${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${process.pid}-0a0b0c0d`,
    ];
    for (const name of others) await writeFile(join(dest, name), 'partial');
    // One an earlier version left, named after its file, of a process that is gone: swept too.
    const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    await writeFile(join(dest, `.old.jpg.mm-get-${host}-${killed.child.pid}-0e0e0e0e`), 'partial');
    const next = startGet('small.bin', dest);
    const [code] = await next.exited;
    expect(code, next.err()).toBe(0);
    expect((await readdir(dest)).sort()).toEqual([...others, 'small.bin'].sort());
    expect(await readFile(join(dest, 'small.bin'))).toEqual(SMALL);
  }, 90_000);

  it("a name like a partial download it may not remove (a folder; another user's file in a sticky folder) does not stop it: left as it is (probe cli)", async () => {
    const dest = join(dir, 'gdir-not-mine');
    await mkdir(dest);
    const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    // No process has this id (above Linux's pid_max): the names read as a dead get's orphans.
    const folder = `.mm-get-${host}-99999999-0f0f0f0f`;
    await mkdir(join(dest, folder, 'inside'), { recursive: true });
    const link = `.mm-get-${host}-99999999-0d0d0d0d`;
    await writeFile(join(dir, 'linked-to'), 'not a download');
    await symlink(join(dir, 'linked-to'), join(dest, link));
    const next = startGet('small.bin', dest);
    const [code] = await next.exited;
    expect(code, next.err()).toBe(0);
    expect((await readdir(dest)).sort()).toEqual([link, folder, 'small.bin'].sort());
    expect(await readFile(join(dir, 'linked-to'), 'utf8')).toBe('not a download');
  }, 90_000);
});

/** `GET /v1/files/{path}`: version 1 of `path`, with that SHA-256 and size. */
function answerFile(res: ServerResponse, path: string, sha256: string, size: number): void {
  const head = {
    version: 1,
    sha256,
    size,
    contentType: 'application/octet-stream',
    committedAt: '2026-12-01T00:00:00.000Z',
    deleted: false,
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ path, head, targets: [] }));
}

function startGet(path: string, dest: string) {
  return spawnWatched([join(repoRoot, 'bin/media-mirror.js'), 'get', path, `${dest}/`], {
    cwd: dir,
    env: { PATH: process.env.PATH, MIRROR_API_URL: api, MIRROR_API_TOKEN: 't' },
  });
}

/** The partial file of g300.bin, once the download has written bytes to it. */
function partialFile(dest: string, err: () => string): Promise<string> {
  return until(`a partial file in ${dest} (stderr: ${err()})`, async () => {
    for (const name of await readdir(dest)) {
      if (/^\.mm-get-/.test(name) && (await stat(join(dest, name))).size > 0) return name;
    }
    return undefined;
  });
}
