/**
 * `get` downloads into a hidden temporary file next to the destination: stopped by Ctrl-C
 * (SIGINT) or SIGTERM mid-download, the bin (bin/media-mirror.js, a process of its own) leaves
 * neither that file nor the destination behind, and still ends by the signal. The API and the
 * storage it points to are one slow local HTTP server: the body never arrives in full.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWatched } from '../../support/spawn-watched.ts';
import { waitFor } from '../../support/wait.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const SIZE = 300 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 7);

let dir: string;
let server: Server;
let api: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-get-interrupt-'));
  server = createServer((req, res) => {
    if (req.url === '/v1/files/g300.bin') {
      const head = {
        version: 1,
        sha256: createHash('sha256').update('not these bytes').digest('hex'),
        size: SIZE,
        contentType: 'application/octet-stream',
        committedAt: '2026-12-01T00:00:00.000Z',
        deleted: false,
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: 'g300.bin', head, targets: [] }));
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
    it(`leaves no .<name>.mm-get-* file behind on ${signal}, and ends by the signal`, async () => {
      const dest = join(dir, `gdir-${signal}`);
      await mkdir(dest);
      const { child, exited, err } = spawnWatched(
        [join(repoRoot, 'bin/media-mirror.js'), 'get', 'g300.bin', `${dest}/`],
        {
          cwd: dir,
          env: { PATH: process.env.PATH, MIRROR_API_URL: api, MIRROR_API_TOKEN: 't' },
        },
      );
      // The partial file holds bytes: the download is writing to it.
      const temp = await until(`a partial file in ${dest} (stderr: ${err()})`, async () => {
        for (const name of await readdir(dest)) {
          if (/^\.g300\.bin\.mm-get-/.test(name) && (await stat(join(dest, name))).size > 0) return name;
        }
        return undefined;
      });
      expect(temp).toMatch(/^\.g300\.bin\.mm-get-[0-9a-f]{8}$/);
      child.kill(signal);
      const [code, endedBy] = await exited;
      expect(await readdir(dest)).toEqual([]);
      // Ended by the signal, as an uncaught one ends a process (a shell shows 130 / 143).
      expect({ code, endedBy, err: err() }).toEqual({ code: null, endedBy: signal, err: '' });
    }, 90_000);
  }
});
