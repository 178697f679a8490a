/**
 * The file verbs through runCli against a fake API (its answers checked by the client against
 * contracts/api.ts, as the real one's are): what each prints, what it sends, its exit codes.
 */

import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../../cli/program.ts';
import type { FetchLike } from '../../../web/client/api.ts';
import { PATH_CHECK_FROM_BYTES } from '../../../web/client/upload/claim.ts';
import { untilCacheable } from '../../support/library.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-files-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Answer = { status: number; body?: unknown; bytes?: Uint8Array };
type Route = (url: URL, init: RequestInit) => Answer;

function harness(
  route: Route,
  env: NodeJS.ProcessEnv = {},
  putFile?: CliIo['putFile'],
  more: Partial<CliIo> = {},
) {
  let stdout = '';
  let stderr = '';
  const requests: string[] = [];
  const fetch: FetchLike = async (input, init) => {
    const url = new URL(input);
    requests.push(`${init.method} ${url.pathname}${url.search}`);
    const { status, body, bytes } = route(url, init);
    const headers = status === 302 ? { location: String(body) } : undefined;
    const payload = bytes ?? (status === 302 || body === undefined ? null : JSON.stringify(body));
    return new Response(payload as BodyInit | null, { status, headers });
  };
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { MIRROR_API_URL: 'https://api.test', MIRROR_API_TOKEN: 't', ...env },
    cwd: dir,
    fetch,
    putFile:
      putFile ??
      (async () => {
        throw new Error('no PUT expected');
      }),
    ...more,
  };
  const run = (...args: string[]) => runCli(['node', 'media-mirror', ...args], io);
  return { run, requests, fetch, out: () => stdout, err: () => stderr };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const at = '2025-06-01T11:55:00.000Z';
const change = (path: string, version: number, content: string | null) => ({
  path,
  version,
  sha256: content === null ? null : sha(content),
  size: content === null ? 0 : content.length,
  contentType: content === null ? null : 'image/png',
  deleted: content === null,
  committedAt: at,
});

/** A `GET /v1/limits` answer: the API's defaults, with the size and types a test needs. */
const limitsAnswer = (over: { maxUploadBytes: number; contentTypes: string[] }) => ({
  multipartThresholdBytes: 16 * 1024 ** 2,
  partBytes: 8 * 1024 ** 2,
  minPartBytes: 5 * 1024 ** 2,
  maxPartBytes: 5 * 1024 ** 3,
  maxParts: 10_000,
  presignTtlSeconds: 900,
  maxPathBytes: 1024,
  defaultPageSize: 100,
  maxPageSize: 1000,
  maxRequestBodyBytes: 1024 ** 2,
  maxPartsPerRequest: 1000,
  ...over,
});

/**
 * A feed in pages: each page's cursor is its index; the page after the last is empty. `GET
 * /v1/targets`: one pull target.
 */
function feed(pages: ReturnType<typeof change>[][]): Route {
  return (url) => {
    if (url.pathname === '/v1/targets') return { status: 200, body: { targets: [PULL_TARGET] } };
    const cursor = Number(url.searchParams.get('cursor') ?? '0');
    return { status: 200, body: { changes: pages[cursor] ?? [], cursor: String(cursor + 1) } };
  };
}

/** A pull target taking every path: `sync --dry-run` then predicts the folder/file rule. */
const PULL_TARGET = {
  id: 'onprem',
  kind: 'pull',
  lag: { lagSeconds: 0, pending: 0, pendingCapped: false, heartbeatAgeSeconds: null },
};

const notFound = {
  status: 404,
  body: { error: { code: 'not_found', message: 'no file at "x"', field: 'path' } },
};

describe('media-mirror ls', () => {
  const listed = (path: string, version: number, content: string) => {
    const { deleted: _d, ...file } = change(path, version, content);
    return file;
  };
  /** `GET /v1/files` in pages of two: the cursor is the index of the next page. */
  function files(all: ReturnType<typeof listed>[]): Route {
    return (url) => {
      if (url.pathname !== '/v1/files') return notFound;
      const prefix = url.searchParams.get('prefix') ?? '';
      const under = all.filter((f) => f.path.startsWith(prefix));
      const from = Number(url.searchParams.get('cursor') ?? '0');
      const next = from + 2 < under.length ? { cursor: String(from + 2) } : {};
      return { status: 200, body: { prefix, files: under.slice(from, from + 2), ...next } };
    };
  }
  const mirror = [
    listed('photos/a.png', 3, 'a3'),
    listed('photos/b.png', 1, 'b1'),
    listed('photos/c/d.png', 1, 'd'),
    listed('docs/c.pdf', 1, 'c'),
  ];

  it('pages through GET /v1/files under the prefix; a bare name is its top folder', async () => {
    const h = harness(files(mirror));
    expect(await h.run('ls', 'photos', '--json')).toBe(0);
    expect(JSON.parse(h.out())).toEqual({
      prefix: 'photos',
      files: [mirror[0], mirror[1], mirror[2]],
    });
    expect(h.requests).toEqual([
      'GET /v1/files?prefix=photos%2F&limit=1000',
      'GET /v1/files?prefix=photos%2F&limit=1000&cursor=2',
    ]);
  });

  it('prints time, size, version, SHA-256 and path, sorted, and a total', async () => {
    const h = harness(files(mirror));
    expect(await h.run('ls')).toBe(0);
    const lines = h.out().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^COMMITTED\s+SIZE\s+VERSION\s+SHA256\s+PATH$/);
    expect(lines[1]).toBe(`2025-06-01 11:55:00Z             1  v1       ${sha('c')}  docs/c.pdf`);
    expect(lines[2]).toContain(`v3       ${sha('a3')}  photos/a.png`);
    expect(lines.at(-1)).toBe('4 file(s), 6 bytes');
  });

  it("shows the API's refusal of a prefix, naming the rule", async () => {
    const h = harness(() => ({
      status: 400,
      body: { error: { code: 'invalid_path', message: 'prefix must be relative', field: 'prefix' } },
    }));
    // A prefix the CLI's own rules let through (a deployment's rules may be stricter).
    expect(await h.run('ls', 'a/b/')).toBe(1);
    expect(h.err()).toContain('prefix must be relative');
  });
});

describe('media-mirror log', () => {
  const version = (n: number, deleted = false) => ({
    version: n,
    sha256: deleted ? null : sha(`v${n}`),
    size: deleted ? 0 : 2,
    contentType: deleted ? null : 'image/png',
    committedAt: at,
    deleted,
  });

  it('follows the version pages to the end, newest first, deletions marked', async () => {
    const h = harness((url) => {
      const before = url.searchParams.get('before');
      if (before === null)
        return {
          status: 200,
          body: { path: 'a.png', versions: [version(3, true), version(2)], nextBefore: 2 },
        };
      return { status: 200, body: { path: 'a.png', versions: [version(1)] } };
    });
    expect(await h.run('log', 'a.png', '--json')).toBe(0);
    expect(JSON.parse(h.out()).versions.map((v: { version: number }) => v.version)).toEqual([3, 2, 1]);
    expect(h.requests).toEqual([
      'GET /v1/files/a.png/versions?limit=1000',
      'GET /v1/files/a.png/versions?limit=1000&before=2',
    ]);

    const text = harness((url) =>
      url.searchParams.has('before')
        ? { status: 200, body: { path: 'a.png', versions: [version(1)] } }
        : { status: 200, body: { path: 'a.png', versions: [version(3, true), version(2)], nextBefore: 2 } },
    );
    expect(await text.run('log', 'a.png')).toBe(0);
    expect(text.out()).toContain('v3       2025-06-01 11:55:00Z  -     (deleted)');
  });

  it('an unknown path: one line, exit 3', async () => {
    const h = harness(() => notFound);
    expect(await h.run('log', 'nope.png')).toBe(3);
    expect(h.err()).toMatch(/^media-mirror: no such path: nope\.png/);
    expect(h.out()).toBe('');
  });
});

describe('media-mirror rm', () => {
  it('commits a tombstone only at the given head: --if-version goes to the API', async () => {
    const h = harness((_url, init) => {
      expect(init.method).toBe('DELETE');
      expect(new Headers(init.headers).get('idempotency-key')).toMatch(/.+/);
      return { status: 200, body: { status: 'committed', path: 'a/b.png', version: 4, deleted: true } };
    });
    expect(await h.run('rm', 'a/b.png', '--if-version', '3')).toBe(0);
    expect(h.requests).toEqual(['DELETE /v1/files/a%2Fb.png?ifVersion=3']);
    expect(h.out()).toBe('deleted a/b.png (version 4 is the tombstone)\n');
  });

  it('a head other than --if-version: exit 4; no such path: exit 3; a bad flag: exit 2 and nothing sent', async () => {
    const conflict = harness(() => ({
      status: 409,
      body: {
        error: {
          code: 'version_conflict',
          message: '"a.png" is at version 5, the request expected 3',
          field: 'ifVersion',
        },
      },
    }));
    expect(await conflict.run('rm', 'a.png', '--if-version', '3')).toBe(4);
    expect(conflict.err()).toContain('error 409 version_conflict');
    expect(await harness(() => notFound).run('rm', 'a.png')).toBe(3);
    const usage = harness(() => notFound);
    expect(await usage.run('rm', 'a.png', '--if-version', 'x')).toBe(2);
    expect(usage.requests).toEqual([]);
  });
});

describe('media-mirror restore', () => {
  it('asks the API to commit the old version as the newest, with --if-version and an Idempotency-Key', async () => {
    const h = harness((_url, init) => {
      expect(JSON.parse(String(init.body))).toEqual({ from: 2, ifVersion: 5 });
      expect(new Headers(init.headers).get('idempotency-key')).toMatch(/.+/);
      return {
        status: 201,
        body: { status: 'committed', path: 'a/b.png', version: 6, restoredFrom: 2, sha256: sha('v2') },
      };
    });
    expect(await h.run('restore', 'a/b.png', '2', '--if-version', '5')).toBe(0);
    expect(h.requests).toEqual(['POST /v1/files/a%2Fb.png/versions']);
    expect(h.out()).toBe('restored a/b.png version 2 as version 6\n');
  });

  it('takes the version as --version N too (as get does); neither, or two that differ: exit 2, nothing sent', async () => {
    const bodies: unknown[] = [];
    const h = harness((_url, init) => {
      bodies.push(JSON.parse(String(init.body)));
      return {
        status: 201,
        body: { status: 'committed', path: 'a/b.png', version: 6, restoredFrom: 2, sha256: sha('v2') },
      };
    });
    expect(await h.run('restore', 'a/b.png', '--version', '2')).toBe(0);
    expect(await h.run('restore', 'a/b.png', '2', '--version', '2')).toBe(0);
    expect(bodies).toEqual([{ from: 2 }, { from: 2 }]);
    expect(h.out()).toBe('restored a/b.png version 2 as version 6\n'.repeat(2));
    const usage = harness(() => notFound);
    expect(await usage.run('restore', 'a/b.png')).toBe(2);
    expect(await usage.run('restore', 'a/b.png', '2', '--version', '3')).toBe(2);
    expect(await usage.run('restore', 'a/b.png', '--version', 'latest')).toBe(2);
    expect(usage.requests).toEqual([]);
    expect(usage.err()).toMatch(/version/);
  });

  it('no such version: exit 3; a version that is not a number: exit 2, nothing sent', async () => {
    expect(await harness(() => notFound).run('restore', 'a.png', '9')).toBe(3);
    const usage = harness(() => notFound);
    expect(await usage.run('restore', 'a.png', 'latest')).toBe(2);
    expect(usage.requests).toEqual([]);
  });
});

describe('media-mirror get', () => {
  const content = randomBytes(3000);
  const head = {
    version: 7,
    sha256: createHash('sha256').update(content).digest('hex'),
    size: content.length,
    contentType: 'image/png',
    committedAt: at,
    deleted: false,
  };
  const api =
    (served: Buffer): Route =>
    (url) => {
      if (url.pathname === '/v1/files/pics%2Fcat.png')
        return { status: 200, body: { path: 'pics/cat.png', head, targets: [] } };
      if (url.pathname.endsWith('/content'))
        return { status: 302, body: 'http://s3.test/blobs/x?X-Amz-Signature=s' };
      if (url.host === 's3.test') return { status: 200, bytes: served };
      return notFound;
    };

  /** The path's head is `head` at the first read and `next` after; storage answers `stored`. */
  const headMovesOn = (next: Record<string, unknown>, stored: Answer) => {
    let reads = 0;
    const route: Route = (url) => {
      if (url.pathname === '/v1/files/pics%2Fcat.png') {
        reads++;
        return { status: 200, body: { path: 'pics/cat.png', head: reads === 1 ? head : next, targets: [] } };
      }
      if (url.pathname.endsWith('/content'))
        return { status: 302, body: 'http://s3.test/blobs/x?X-Amz-Signature=s' };
      if (url.host === 's3.test') return stored;
      return notFound;
    };
    return { route, statusReads: () => reads };
  };

  it('writes the file once its size and SHA-256 match the head', async () => {
    const h = harness(api(content));
    expect(await h.run('get', 'pics/cat.png', 'out.png', '--json')).toBe(0);
    expect(await readFile(join(dir, 'out.png'))).toEqual(content);
    expect(JSON.parse(h.out())).toMatchObject({
      path: 'pics/cat.png',
      version: 7,
      sha256: head.sha256,
      file: join(dir, 'out.png'),
    });
  });

  it('-o/--output names the destination as [dest] does; two that differ: exit 2, nothing asked', async () => {
    const h = harness(api(content));
    expect(await h.run('get', 'pics/cat.png', '-o', 'o1.png'), h.err()).toBe(0);
    expect(await h.run('get', 'pics/cat.png', '--output', 'o2.png', '--json'), h.err()).toBe(0);
    expect(await h.run('get', 'pics/cat.png', 'o3.png', '-o', 'o3.png'), h.err()).toBe(0);
    for (const name of ['o1.png', 'o2.png', 'o3.png'])
      expect(await readFile(join(dir, name))).toEqual(content);
    const usage = harness(api(content));
    expect(await usage.run('get', 'pics/cat.png', 'a.png', '-o', 'b.png')).toBe(2);
    expect(usage.err()).toMatch(/two destinations/);
    expect(usage.requests).toEqual([]);
  });

  it('-o - writes the bytes to stdout once verified, and says what it wrote on stderr; wrong bytes: exit 5, none written', async () => {
    const collect = () => {
      const chunks: Buffer[] = [];
      const contentOut = new PassThrough();
      contentOut.on('data', (c: Buffer) => chunks.push(c));
      return { contentOut, bytes: () => Buffer.concat(chunks) };
    };
    const good = collect();
    const h = harness(api(content), {}, undefined, { contentOut: good.contentOut });
    expect(await h.run('get', 'pics/cat.png', '-o', '-', '--json'), h.err()).toBe(0);
    expect(good.bytes()).toEqual(content);
    expect(h.out()).toBe('');
    expect(JSON.parse(h.err())).toMatchObject({ path: 'pics/cat.png', version: 7, file: '-' });
    await expect(stat(join(dir, '-'))).rejects.toThrow(/ENOENT/);

    const tampered = Buffer.from(content);
    tampered[10] = (tampered[10] ?? 0) ^ 1;
    const bad = collect();
    const before = (await readdir(tmpdir())).filter((n) => n.startsWith('mm-get-'));
    const refused = harness(api(tampered), {}, undefined, { contentOut: bad.contentOut });
    expect(await refused.run('get', 'pics/cat.png', '-o', '-')).toBe(5);
    expect(bad.bytes().length).toBe(0);
    expect((await readdir(tmpdir())).filter((n) => n.startsWith('mm-get-'))).toEqual(before);
  });

  it('a file it replaces keeps its permissions (and owner, as root), as cp over it would (probe V8)', async () => {
    const target = join(dir, 'private.png');
    await writeFile(target, 'old bytes');
    await chmod(target, 0o600);
    if (process.getuid?.() === 0) await chown(target, 4242, 4343);
    const h = harness(api(content));
    expect(await h.run('get', 'pics/cat.png', 'private.png'), h.err()).toBe(0);
    expect(await readFile(target)).toEqual(content);
    const after = await stat(target);
    expect(after.mode & 0o777).toBe(0o600);
    if (process.getuid?.() === 0) expect([after.uid, after.gid]).toEqual([4242, 4343]);
  });

  it('the download over a private file is private while it runs: others cannot read the new bytes before they are checked (probe leak, L5)', async () => {
    const target = join(dir, 'secret.png');
    await writeFile(target, 'old secret');
    await chmod(target, 0o600);
    const modes: number[] = [];
    const routes = harness(api(content));
    // Storage sends half the bytes, then, while the download is under way, the temp file is looked at.
    const fetch: FetchLike = async (input, init) => {
      if (new URL(input).host !== 's3.test') return routes.fetch(input, init);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === 0) {
            controller.enqueue(new Uint8Array(content.subarray(0, 1500)));
            sent = 1;
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
          for (const name of await readdir(dir)) {
            if (name.startsWith('.mm-get-')) modes.push((await stat(join(dir, name))).mode & 0o777);
          }
          controller.enqueue(new Uint8Array(content.subarray(1500)));
          controller.close();
        },
      });
      return new Response(body, { status: 200 });
    };
    const h = harness(api(content), {}, undefined, { fetch });
    expect(await h.run('get', 'pics/cat.png', 'secret.png'), h.err()).toBe(0);
    expect(await readFile(target)).toEqual(content);
    expect(modes.length).toBeGreaterThan(0);
    expect(
      modes.every((m) => m === 0o600),
      modes.map((m) => m.toString(8)).join(),
    ).toBe(true);
    expect((await stat(target)).mode & 0o777).toBe(0o600);
  });

  it('a head that moves on between the status read and the download: read again, and the newer bytes are written (no false exit 5)', async () => {
    const newer = randomBytes(2000);
    const v8 = {
      ...head,
      version: 8,
      sha256: createHash('sha256').update(newer).digest('hex'),
      size: newer.length,
    };
    // The first read sees version 7; by the download, version 8 is the head.
    const { route } = headMovesOn(v8, { status: 200, bytes: newer });
    const h = harness(route);
    expect(await h.run('get', 'pics/cat.png', 'moved.png', '--json')).toBe(0);
    expect(await readFile(join(dir, 'moved.png'))).toEqual(newer);
    expect(JSON.parse(h.out())).toMatchObject({ version: 8, sha256: v8.sha256 });
    expect((await readdir(dir)).filter((n) => n.includes('.mm-get-'))).toEqual([]);
  });

  it("a target's copy already replaced by a newer version whose row is not yet written: those bytes are that version's, written (no false exit 5)", async () => {
    // replicate copies the object, then records the row: between the two, the replica serves
    // version 8 while the ledger still says the target holds 7 (seen with get --target during
    // rapid replaces: 4 of 8 runs exited 5, "verification failed", on a healthy replica).
    const newer = randomBytes(2000);
    const v8 = {
      ...head,
      version: 8,
      sha256: createHash('sha256').update(newer).digest('hex'),
      size: newer.length,
    };
    const row = { id: 'eu-west-1', kind: 's3', appliedVersion: 7, status: 'verified', appliedAt: at };
    const h = harness((url) => {
      if (url.pathname === '/v1/files/pics%2Fcat.png')
        return { status: 200, body: { path: 'pics/cat.png', head: v8, targets: [row] } };
      if (url.pathname === '/v1/files/pics%2Fcat.png/versions') {
        const versions = [v8, head].filter((v) => v.version < Number(url.searchParams.get('before') ?? 99));
        const limit = Number(url.searchParams.get('limit') ?? 100);
        return { status: 200, body: { path: 'pics/cat.png', versions: versions.slice(0, limit) } };
      }
      if (url.pathname.endsWith('/content'))
        return { status: 302, body: 'http://s3.test/replica/pics/cat.png?X-Amz-Signature=s' };
      if (url.host === 's3.test') return { status: 200, bytes: newer };
      return notFound;
    });
    expect(await h.run('get', 'pics/cat.png', 'ahead.png', '--target', 'eu-west-1', '--json'), h.err()).toBe(
      0,
    );
    expect(await readFile(join(dir, 'ahead.png'))).toEqual(newer);
    expect(JSON.parse(h.out())).toMatchObject({ version: 8, sha256: v8.sha256, target: 'eu-west-1' });
  });

  it('a copy storage no longer holds (removed out of band; the ledger still says it is there): exit 3, saying so', async () => {
    const h = harness((url) => (url.host === 's3.test' ? notFound : api(content)(url, { method: 'GET' })));
    expect(await h.run('get', 'pics/cat.png', 'gone.png', '--target', 'eu-west-1')).toBe(3);
    expect(h.err()).toMatch(
      /storage has no object at http:\/\/s3.test\/blobs\/x \(404\): the copy is missing there/,
    );
    expect(h.err()).not.toMatch(/X-Amz-Signature/);
  });

  it('a path deleted while its copy is read (the replica removed it: 404): read again and said deleted, not "the copy is missing" (probe V5)', async () => {
    const tombstone = { ...head, version: 8, sha256: null, size: 0, contentType: null, deleted: true };
    const moved = headMovesOn(tombstone, notFound);
    const h = harness(moved.route);
    expect(await h.run('get', 'pics/cat.png', 'deleted.png', '--target', 'eu-west-1')).toBe(3);
    expect(h.err()).toMatch(/no such path: pics\/cat\.png \(deleted\)/);
    expect(h.err()).not.toMatch(/missing there/);
    expect(moved.statusReads()).toBe(2);
  });

  it("a download storage refuses (403, S3's answer for a missing key to a signer without ListBucket): its code and message named, exit 1", async () => {
    const refusal = Buffer.from(
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
    );
    const h = harness((url) =>
      url.host === 's3.test' ? { status: 403, bytes: refusal } : api(content)(url, { method: 'GET' }),
    );
    expect(await h.run('get', 'pics/cat.png', 'refused.png', '--target', 'eu-west-1')).toBe(1);
    expect(h.err()).toMatch(
      /storage refused the download from http:\/\/s3.test\/blobs\/x \(403 AccessDenied: Access Denied\)/,
    );
    expect(h.err()).not.toMatch(/X-Amz-Signature/);
  });

  it('other bytes than recorded: exit 5, nothing left at the destination', async () => {
    const tampered = Buffer.from(content);
    tampered[10] = (tampered[10] ?? 0) ^ 1;
    const h = harness(api(tampered));
    await mkdir(join(dir, 'bad'), { recursive: true });
    expect(await h.run('get', 'pics/cat.png', 'bad')).toBe(5);
    expect(h.err()).toMatch(/but version 7 is 3000 bytes/);
    expect(await readdir(join(dir, 'bad'))).toEqual([]);
  });

  it('storage sending more bytes than the version has: the download stops there, exit 5, the disk is not filled (probe cli)', async () => {
    // A replica object replaced out of band by a huge one, or a hostile endpoint streaming for
    // ever: 1 GiB on offer, read a chunk at a time.
    let pulled = 0;
    const endless = () =>
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled >= 1024 ** 3) return controller.close();
          pulled += 64 * 1024;
          controller.enqueue(new Uint8Array(64 * 1024));
        },
      });
    const apiFetch = harness(api(content)).fetch;
    const h = harness(api(content), {}, undefined, {
      fetch: async (input, init) =>
        new URL(input).host === 's3.test' ? new Response(endless(), { status: 200 }) : apiFetch(input, init),
    });
    await mkdir(join(dir, 'flood'), { recursive: true });
    expect(await h.run('get', 'pics/cat.png', 'flood')).toBe(5);
    expect(h.err()).toMatch(/more than 3000 bytes/);
    expect(pulled).toBeLessThan(1024 ** 2);
    expect(await readdir(join(dir, 'flood'))).toEqual([]);
  });

  it('a download cut off mid-body is tried again; one cut off every time fails naming how far it got, not an unexpected error', async () => {
    // A connection reset part-way (a proxy, a NAT timeout, a storage node going away): undici ends
    // the body with TypeError('terminated').
    const cutOff = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(content.subarray(0, 1000)));
        },
        pull(controller) {
          controller.error(new TypeError('terminated', { cause: new Error('other side closed') }));
        },
      });
    const apiFetch = harness(api(content)).fetch;
    let downloads = 0;
    const flaky = harness(api(content), {}, undefined, {
      fetch: async (input, init) => {
        if (new URL(input).host !== 's3.test') return apiFetch(input, init);
        downloads++;
        return new Response(downloads === 1 ? cutOff() : new Uint8Array(content), { status: 200 });
      },
    });
    await mkdir(join(dir, 'flaky'), { recursive: true });
    expect(await flaky.run('get', 'pics/cat.png', 'flaky')).toBe(0);
    expect(downloads).toBe(2);
    expect(await readFile(join(dir, 'flaky', 'cat.png'))).toEqual(content);

    downloads = 0;
    const dead = harness(api(content), {}, undefined, {
      fetch: async (input, init) => {
        if (new URL(input).host !== 's3.test') return apiFetch(input, init);
        downloads++;
        return new Response(cutOff(), { status: 200 });
      },
    });
    await mkdir(join(dir, 'dead'), { recursive: true });
    expect(await dead.run('get', 'pics/cat.png', 'dead')).toBe(1);
    expect(downloads).toBe(3);
    expect(dead.err()).toMatch(
      /download from http:\/\/s3\.test\/blobs\/x stopped after \d+ of 3000 bytes \(terminated: other side closed\)/,
    );
    expect(dead.err()).not.toMatch(/unexpected/);
    expect(await readdir(join(dir, 'dead'))).toEqual([]);
  });

  it('a download that goes quiet is cut at --read-timeout and tried again, not left to wait out undici (5 minutes)', async () => {
    // A stalled proxy or storage node: the connection stays open and no byte comes. Ended by the
    // request's signal, as fetch ends a body it aborts.
    const quiet = (signal: AbortSignal | null | undefined) =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(content.subarray(0, 1000)));
          signal?.addEventListener('abort', () => controller.error(signal.reason));
        },
      });
    const apiFetch = harness(api(content)).fetch;
    let downloads = 0;
    const stalls = harness(api(content), {}, undefined, {
      fetch: async (input, init) => {
        if (new URL(input).host !== 's3.test') return apiFetch(input, init);
        downloads++;
        return new Response(downloads === 1 ? quiet(init.signal) : new Uint8Array(content), { status: 200 });
      },
    });
    await mkdir(join(dir, 'stalls'), { recursive: true });
    const started = Date.now();
    expect(await stalls.run('get', 'pics/cat.png', 'stalls', '--read-timeout', '0.3'), stalls.err()).toBe(0);
    expect(downloads).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await readFile(join(dir, 'stalls', 'cat.png'))).toEqual(content);

    downloads = 0;
    const dead = harness(api(content), {}, undefined, {
      fetch: async (input, init) => {
        if (new URL(input).host !== 's3.test') return apiFetch(input, init);
        downloads++;
        return new Response(quiet(init.signal), { status: 200 });
      },
    });
    await mkdir(join(dir, 'stalls-dead'), { recursive: true });
    expect(await dead.run('get', 'pics/cat.png', 'stalls-dead', '--read-timeout', '0.2')).toBe(1);
    expect(downloads).toBe(3);
    expect(dead.err()).toMatch(/stopped after 1000 of 3000 bytes \(no bytes for 0\.2 s\)/);
    expect(await readdir(join(dir, 'stalls-dead'))).toEqual([]);
  });

  it('a destination ending in / that is no folder, or in a folder that does not exist: exit 2, nothing sent or written', async () => {
    for (const dest of ['newdir/', join(dir, 'no', 'such', 'dir', 'f.png'), 'nofolder/x.png']) {
      const h = harness(api(content));
      expect(await h.run('get', 'pics/cat.png', dest)).toBe(2);
      expect(h.err()).toMatch(/^media-mirror: the destination .*(is not a folder|does not exist)/m);
      expect(h.err()).not.toMatch(/unexpected/);
      expect(h.requests).toEqual([]);
    }
    expect(await readdir(dir)).not.toContain('newdir');
    const file = join(dir, 'plain-file');
    await writeFile(file, 'keep');
    const h = harness(api(content));
    expect(await h.run('get', 'pics/cat.png', `${file}/`)).toBe(2);
    expect(await h.run('get', 'pics/cat.png', join(file, 'x.png'))).toBe(2);
    expect(await readFile(file, 'utf8')).toBe('keep');
  });

  it('--json: a failure is one JSON object on stdout too (code, message, exit code), as a script reads it', async () => {
    const h = harness(() => notFound);
    expect(await h.run('get', 'pics/none.png', '--json')).toBe(3);
    const answer = JSON.parse(h.out()) as { error: Record<string, unknown> };
    expect(answer.error).toMatchObject({ exitCode: 3, code: 'not_found', status: 404, field: 'path' });
    expect(String(answer.error.message)).toMatch(/no such path: pics\/none.png/);
    expect(h.err()).toMatch(/^media-mirror: no such path/);
    const usage = harness(() => notFound);
    expect(await usage.run('rm', 'x', '--if-version', 'abc', '--json')).toBe(2);
    expect(JSON.parse(usage.out())).toMatchObject({ error: { exitCode: 2, code: 'usage' } });
    const plain = harness(() => notFound);
    expect(await plain.run('get', 'pics/none.png')).toBe(3);
    expect(plain.out()).toBe('');
  });

  it("the path's own name as the destination is checked as a named one: a FIFO or a folder there is refused before anything is asked (exit 2), a symlink is written through (probe V1)", async () => {
    const cwd = join(dir, 'default-dest');
    await mkdir(cwd, { recursive: true });
    execFileSync('mkfifo', [join(cwd, 'cat.png')]);
    const fifo = harness(api(content), {}, undefined, { cwd });
    expect(await fifo.run('get', 'pics/cat.png')).toBe(2);
    expect(fifo.err()).toMatch(/the destination .*cat\.png is not a regular file/);
    expect(fifo.requests).toEqual([]);
    expect((await lstat(join(cwd, 'cat.png'))).isFIFO()).toBe(true);

    await rm(join(cwd, 'cat.png'));
    await mkdir(join(cwd, 'cat.png'));
    const folder = harness(api(content), {}, undefined, { cwd });
    expect(await folder.run('get', 'pics/cat.png')).toBe(2);
    expect(folder.err()).not.toMatch(/unexpected|EISDIR/);
    expect(folder.requests).toEqual([]);

    await rm(join(cwd, 'cat.png'), { recursive: true });
    await writeFile(join(cwd, 'real.png'), 'stale');
    await symlink('real.png', join(cwd, 'cat.png'));
    const link = harness(api(content), {}, undefined, { cwd });
    expect(await link.run('get', 'pics/cat.png'), link.err()).toBe(0);
    expect((await lstat(join(cwd, 'cat.png'))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(cwd, 'real.png'))).toEqual(content);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'a symlink another user put at the destination in a shared folder is not followed: exit 2, your file untouched (probe localsec)',
    async () => {
      // /tmp, or a web root the web server's group writes: someone plants `report.pdf ->
      // ~/.ssh/authorized_keys`, and `get docs/report.pdf` there renamed the mirror's bytes over
      // the link's target, keeping its owner and mode. The kernel (fs.protected_symlinks) would not
      // have let an open() follow it there; the rename over realpath() went around that.
      const shared = join(dir, 'shared-sticky');
      await mkdir(shared, { recursive: true });
      await chmod(shared, 0o1777);
      const victim = join(dir, 'victim.conf');
      await writeFile(victim, 'mine', { mode: 0o600 });
      await symlink(victim, join(shared, 'cat.png'));
      await symlink(victim, join(shared, 'named.png'));
      await lchown(join(shared, 'cat.png'), 65534, 65534);
      await lchown(join(shared, 'named.png'), 65534, 65534);
      for (const dest of [[], ['named.png'], [join(shared, 'named.png')]]) {
        const h = harness(api(content), {}, undefined, { cwd: shared });
        expect(await h.run('get', 'pics/cat.png', ...dest)).toBe(2);
        expect(h.err()).toMatch(
          /the destination .*\.png is a symbolic link to .*victim\.conf that another user \(uid 65534\) made in a folder it does not own: not followed; remove it, or name another file/,
        );
        expect(h.requests).toEqual([]);
      }
      expect(await readFile(victim, 'utf8')).toBe('mine');
      // One of your own there is yours to follow, as before.
      await lchown(join(shared, 'cat.png'), 0, 0);
      const own = harness(api(content), {}, undefined, { cwd: shared });
      expect(await own.run('get', 'pics/cat.png'), own.err()).toBe(0);
      expect(await readFile(victim)).toEqual(content);
    },
  );

  it('a symlink to nothing as the destination is refused (exit 2, nothing asked), as cp refuses it, not replaced by a file (probe cli)', async () => {
    const cwd = join(dir, 'dangling-dest');
    await mkdir(cwd, { recursive: true });
    await symlink('not-yet/cat.png', join(cwd, 'cat.png'));
    await symlink('missing.png', join(cwd, 'named.png'));
    for (const dest of [[], ['named.png']]) {
      const h = harness(api(content), {}, undefined, { cwd });
      expect(await h.run('get', 'pics/cat.png', ...dest)).toBe(2);
      expect(h.err()).toMatch(/is a symbolic link to .*, which does not exist/);
      expect(h.requests).toEqual([]);
    }
    expect((await lstat(join(cwd, 'cat.png'))).isSymbolicLink()).toBe(true);
    expect((await lstat(join(cwd, 'named.png'))).isSymbolicLink()).toBe(true);
    expect((await readdir(cwd)).sort()).toEqual(['cat.png', 'named.png']);
  });

  it('a name as long as the path rules allow (255 bytes) downloads: the temporary name does not grow with it (probe V6)', async () => {
    const name = `${'n'.repeat(251)}.png`;
    const path = `pics/${name}`;
    const h = harness((url) => {
      if (url.pathname === `/v1/files/${encodeURIComponent(path)}`)
        return { status: 200, body: { path, head, targets: [] } };
      if (url.pathname.endsWith('/content'))
        return { status: 302, body: 'http://s3.test/blobs/x?X-Amz-Signature=s' };
      if (url.host === 's3.test') return { status: 200, bytes: content };
      return notFound;
    });
    await mkdir(join(dir, 'long'), { recursive: true });
    expect(await h.run('get', path, 'long/'), h.err()).toBe(0);
    expect(await readFile(join(dir, 'long', name))).toEqual(content);
    expect(await readdir(join(dir, 'long'))).toEqual([name]);
  });

  it('no such path: exit 3, nothing downloaded', async () => {
    const h = harness(() => notFound);
    expect(await h.run('get', 'pics/none.png')).toBe(3);
    expect(h.requests).toEqual(['GET /v1/files/pics%2Fnone.png']);
  });
});

describe('a path in the mirror', () => {
  it("is checked by the API's own rule before anything is hashed or sent: exit 2, the rule named", async () => {
    await writeFile(join(dir, 'note.txt'), 'hello');
    for (const [args, rule] of [
      [['upload', 'note.txt', 'a/../b.txt'], /"\." or "\.\." segments/],
      [['upload', 'note.txt', '/abs.txt'], /relative/],
      [['get', 'a\u200bb.txt'], /invisible/],
      [['rm', 'a//b.txt'], /empty segments/],
    ] as const) {
      const h = harness(() => notFound);
      expect(await h.run(...args)).toBe(2);
      expect(h.err()).toMatch(rule);
      expect(h.requests).toEqual([]);
    }
  });
});

/** A file of `size` bytes that takes no disk (no byte of it is read, or it reads as zeros). */
async function sparseFile(path: string, size: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, size);
}

describe('media-mirror upload: a path the claim would refuse', () => {
  const conflict = {
    code: 'path_conflict',
    message: 'path lies under "clips", which is a file (a pull target cannot hold both)',
    field: 'path',
  };

  it("fails with the claim's error (GET /v1/paths) before the file is hashed: exit 1, no hashing phase, no claim", async () => {
    // Large enough to be asked about (PATH_CHECK_FROM_BYTES); sparse, as no byte of it is read.
    await sparseFile(join(dir, 'big.mp4'), PATH_CHECK_FROM_BYTES);
    const phases: string[] = [];
    const progress = {
      phase: (p: string) => void phases.push(p),
      bytes: () => undefined,
      stop: () => undefined,
    };
    const h = harness(
      (url) =>
        url.pathname === '/v1/paths' ? { status: 400, body: { error: conflict } } : { status: 500, body: {} },
      {},
      undefined,
      { progress },
    );
    expect(await h.run('upload', join(dir, 'big.mp4'), 'clips/a.mp4')).toBe(1);
    expect(h.err()).toBe(`media-mirror: error 400 path_conflict: ${conflict.message} (field: path)\n`);
    expect(h.requests).toEqual(['GET /v1/paths?path=clips%2Fa.mp4']);
    expect(phases).toEqual([]);
  });

  it('an API from before GET /v1/paths (404 no_route): hashed and claimed as before', async () => {
    await sparseFile(join(dir, 'large.png'), PATH_CHECK_FROM_BYTES);
    const h = harness((url) =>
      url.pathname === '/v1/paths'
        ? { status: 404, body: { error: { code: 'no_route', message: 'no route for GET /v1/paths' } } }
        : {
            status: 200,
            body: { status: 'committed', uploadId: 'u-1', path: 'img/s.png', version: 2, unchanged: true },
          },
    );
    expect(await h.run('upload', join(dir, 'large.png'), 'img/s.png'), h.err()).toBe(0);
    expect(h.requests).toEqual(['GET /v1/paths?path=img%2Fs.png', 'POST /v1/uploads']);
  });

  it('a file below PATH_CHECK_FROM_BYTES is not asked about: its hash is quicker than the request', async () => {
    await writeFile(join(dir, 'small.png'), 'png');
    const h = harness(() => ({
      status: 200,
      body: { status: 'committed', uploadId: 'u-1', path: 'img/s.png', version: 2, unchanged: true },
    }));
    expect(await h.run('upload', join(dir, 'small.png'), 'img/s.png'), h.err()).toBe(0);
    expect(h.requests).toEqual(['POST /v1/uploads']);
  });
});

describe('--content-type', () => {
  it("is checked by the API's own rule before anything is hashed or sent: type/subtype, no parameters", async () => {
    await writeFile(join(dir, 'note.txt'), 'hello');
    for (const type of ['text/plain; charset=utf-8', 'jpeg', 'image/jpeg\r\nx-evil: 1']) {
      const h = harness(() => notFound);
      expect(await h.run('upload', 'note.txt', 'notes/n.txt', '--content-type', type)).toBe(2);
      expect(h.err()).toMatch(/--content-type.*must be a MIME type such as image\/jpeg/s);
      expect(h.requests).toEqual([]);
    }
  });
});

describe('media-mirror upload, a guessed type the API refuses (probe U9)', () => {
  /** An API taking `accepted` (415 otherwise, in its words), each claim's type recorded. */
  function typedApi(accepted: string[]) {
    const claimed: string[] = [];
    const h = harness((url, init) => {
      if (url.pathname !== '/v1/uploads' || init.method !== 'POST') return notFound;
      const claim = JSON.parse(String(init.body)) as { path: string; contentType: string };
      claimed.push(claim.contentType);
      if (!accepted.includes(claim.contentType)) {
        const message = `contentType ${claim.contentType} is not accepted: it must be one of ${accepted.join(', ')}`;
        const error = { code: 'unsupported_content_type', message, field: 'contentType' };
        return { status: 415, body: { error } };
      }
      const answer = { status: 'committed', uploadId: 'u-1', path: claim.path, version: 1, unchanged: true };
      return { status: 200, body: answer };
    });
    return { ...h, claimed };
  }

  it('is claimed again as application/octet-stream, and says so; a type given with --content-type is not', async () => {
    const file = join(dir, 'meta.json');
    await writeFile(file, '{}');
    const guessed = typedApi(['image/*', 'application/octet-stream']);
    expect(await guessed.run('upload', file, 'm/meta.json', '--json'), guessed.err()).toBe(0);
    expect(guessed.claimed).toEqual(['application/json', 'application/octet-stream']);
    expect(JSON.parse(guessed.out())).toMatchObject({
      version: 1,
      contentType: 'application/octet-stream',
      fellBackFrom: 'application/json',
    });

    const given = typedApi(['image/*', 'application/octet-stream']);
    const code = await given.run('upload', file, 'm/meta.json', '--content-type', 'application/json');
    expect(code).toBe(1);
    expect(given.claimed).toEqual(['application/json']);
    expect(given.err()).toMatch(
      /415 unsupported_content_type: contentType application\/json is not accepted/,
    );

    // The fallback refused too: the error is the guess's, as before.
    const neither = typedApi(['image/*']);
    expect(await neither.run('upload', file, 'm/meta.json')).toBe(1);
    expect(neither.claimed).toEqual(['application/json', 'application/octet-stream']);
    expect(neither.err()).toMatch(/contentType application\/json is not accepted/);
  });
});

describe('media-mirror limits', () => {
  it('prints what the deployment accepts', async () => {
    const limits = limitsAnswer({ maxUploadBytes: 1024 ** 3, contentTypes: ['image/*', 'application/pdf'] });
    const h = harness(() => ({ status: 200, body: limits }));
    expect(await h.run('limits')).toBe(0);
    expect(h.out()).toContain('largest upload        1.0 GiB (1073741824 bytes)');
    expect(h.out()).toContain('multipart above       16.0 MiB, parts of 8.0 MiB');
    const j = harness(() => ({ status: 200, body: limits }));
    expect(await j.run('limits', '--json')).toBe(0);
    expect(JSON.parse(j.out())).toEqual(limits);
    expect(j.requests).toEqual(['GET /v1/limits']);
  });
});

describe('media-mirror sync (against a fake API)', () => {
  it('sent files whose commit cannot be confirmed (the feed refuses) are failed with the reason, and the summary is still printed', async () => {
    const lib = join(dir, 'lib-unconfirmed');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    await writeFile(join(lib, 'b.png'), 'b');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const puts: string[] = [];
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/uploads' && init.method === 'POST') {
        const claim = JSON.parse(String(init.body)) as { path: string };
        return pendingClaim(claim.path);
      }
      // The first listing works; after it, the feed refuses the cursor (the ledger restored meanwhile).
      if (url.pathname === '/v1/changes' && url.searchParams.has('cursor'))
        return {
          status: 400,
          body: {
            error: { code: 'invalid_cursor', message: 'cursor is ahead of the feed', field: 'cursor' },
          },
        };
      return feed([[]])(url, init);
    };
    const h = harness(route, {}, async (request) => {
      puts.push(request.file);
    });
    expect(await h.run('sync', lib, 'm', '--json', '--no-cache')).toBe(1);
    expect(puts).toHaveLength(2);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 2, failed: 2 });
    expect(summary.reports.map((r: { reason: string }) => r.reason)).toEqual([
      expect.stringMatching(/^could not confirm the commit: .*cursor is ahead of the feed/),
      expect.stringMatching(/^could not confirm the commit: /),
    ]);
  });

  it('a prefix the path rules refuse is a usage error (exit 2, the rule named) before anything is read or sent (probe V7)', async () => {
    const lib = join(dir, 'lib-bad-prefix');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    for (const prefix of ['../x', 'bad//pre', 'x/./y']) {
      const h = harness(() => notFound);
      expect(await h.run('sync', lib, prefix, '--json', '--no-cache'), h.err()).toBe(2);
      expect(JSON.parse(h.out())).toMatchObject({ error: { exitCode: 2, code: 'usage' } });
      expect(h.err()).toMatch(/the prefix .*(segments|empty)/);
      expect(h.requests).toEqual([]);
    }
    const fromBucket = harness(() => notFound);
    expect(await fromBucket.run('sync', '../x', '--from', 's3://bucket/in', '--no-cache')).toBe(2);
    expect(fromBucket.requests).toEqual([]);
    // A leading or trailing slash is no rule broken: the folder is the same.
    const h = harness(() => notFound);
    expect(await h.run('sync', lib, '/photos/', '--json', '--no-cache')).not.toBe(2);
  });

  it('ls: a prefix the path rules refuse is a usage error (exit 2, the rule named) before anything is asked, as sync has it', async () => {
    for (const prefix of ['../x', 'bad//pre', 'x/./y']) {
      const h = harness(() => notFound);
      expect(await h.run('ls', prefix, '--json'), h.err()).toBe(2);
      expect(JSON.parse(h.out())).toMatchObject({ error: { exitCode: 2, code: 'usage' } });
      expect(h.err()).toMatch(/the prefix .*(segments|empty)/);
      expect(h.requests).toEqual([]);
    }
  });

  it('--wait cut short by the API (its targets route refusing) still prints the summary, with why the wait stopped; exit 1', async () => {
    const lib = join(dir, 'lib-wait-cut');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/uploads' && init.method === 'POST')
        return {
          status: 200,
          body: { status: 'committed', uploadId: 'u-0', path: 'm/a.png', version: 1, unchanged: true },
        };
      if (url.pathname === '/v1/targets')
        return { status: 400, body: { error: { code: 'invalid', message: 'no targets here' } } };
      if (url.pathname === '/v1/health') return { status: 200, body: { status: 'ok', time: at } };
      return feed([[]])(url, init);
    };
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--json', '--no-cache', '--wait')).toBe(1);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({
      files: 1,
      failed: 0,
      waitError: expect.stringMatching(/no targets here/),
    });
    expect(summary.reports).toEqual([expect.objectContaining({ path: 'm/a.png', version: 1 })]);
    expect(h.err()).toMatch(/waiting for the targets stopped: .*no targets here/);
  });

  it("skips what a `get` left unfinished and an agent's own state and temp files, each with why; the library's files go (probe pathfs)", async () => {
    // A `get` killed mid-download leaves `.mm-get-<host>-<pid>-<hex>`: partial bytes. Synced, they
    // became a file of the mirror at every target. A folder an agent mirrors into holds its state
    // under `.media-mirror/` and its downloads in flight as `.<name>.mirror-tmp-<hex>`.
    const lib = join(dir, 'lib-own-files');
    await mkdir(join(lib, 'photos', '.media-mirror'), { recursive: true });
    await mkdir(join(lib, '.media-mirror'), { recursive: true });
    await writeFile(join(lib, 'photos', 'cat.png'), 'a cat');
    await writeFile(join(lib, 'photos', '.mm-get-host.example-4242-0a1b2c3d'), 'half a dog');
    await writeFile(join(lib, 'photos', '.dog.png.mm-get-host-77-deadbeef'), 'an older get');
    await writeFile(join(lib, 'photos', '.dog.png.mirror-tmp-0a1b2c3d4e5f'), 'half a dog, by the agent');
    await writeFile(join(lib, '.media-mirror', 'state.journal'), '{}');
    await writeFile(
      join(lib, 'photos', '.media-mirror', 'kept.txt'),
      'a folder of that name deeper down is ours',
    );
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--no-cache')).toBe(0);
    const summary = JSON.parse(h.out());
    const outcomes = summary.reports.map((r: { path: string; outcome: string; reason?: string }) => [
      r.path,
      r.outcome,
      r.outcome === 'skipped' ? r.reason : undefined,
    ]);
    expect(outcomes).toEqual([
      ['m/.media-mirror', 'skipped', expect.stringMatching(/on-prem agent's state/)],
      [
        'm/photos/.dog.png.mirror-tmp-0a1b2c3d4e5f',
        'skipped',
        expect.stringMatching(/agent's download in flight/),
      ],
      [
        'm/photos/.dog.png.mm-get-host-77-deadbeef',
        'skipped',
        expect.stringMatching(/download `get` left unfinished/),
      ],
      ['m/photos/.media-mirror/kept.txt', 'planned', undefined],
      [
        'm/photos/.mm-get-host.example-4242-0a1b2c3d',
        'skipped',
        expect.stringMatching(/download `get` left unfinished/),
      ],
      ['m/photos/cat.png', 'planned', undefined],
    ]);
  });

  it('skips, with the rule, files named "versions" or "content" in a folder (the API refuses them), and exits 0', async () => {
    const lib = join(dir, 'lib-sub-resources');
    await mkdir(join(lib, 'sub'), { recursive: true });
    await writeFile(join(lib, 'sub', 'versions'), 'a');
    await writeFile(join(lib, 'sub', 'content'), 'b');
    await writeFile(join(lib, 'content'), 'top-level names are fine');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    expect(await h.run('sync', lib, '', '--dry-run', '--json', '--no-cache')).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 3, planned: 1, skipped: 2, failed: 0 });
    expect(
      summary.reports
        .filter((r: { outcome: string }) => r.outcome === 'skipped')
        .map((r: { path: string; reason: string }) => [r.path, /sub-resource/.test(r.reason)]),
    ).toEqual([
      ['sub/content', true],
      ['sub/versions', true],
    ]);
  });

  it('a name that is not valid UTF-8 (Linux allows any bytes) is skipped, named with \\x escapes; it no longer reads as another file (probe cli)', async () => {
    const lib = join(dir, 'lib-not-utf8');
    await mkdir(lib, { recursive: true });
    const raw = (...parts: (string | number[])[]) =>
      Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    // Two names that Node's UTF-8 decoding makes one ("\uFFFD\uFFFD.jpg"), a folder, and a file
    // whose name is that decoding, spelled in valid UTF-8: a file of its own, sent as any other.
    await writeFile(raw(`${lib}/`, [0xff, 0xfe], '.jpg'), 'a');
    await writeFile(raw(`${lib}/`, [0xff, 0xfd], '.jpg'), 'b');
    await mkdir(raw(`${lib}/bad`, [0xff]));
    await writeFile(raw(`${lib}/bad`, [0xff], '/in.txt'), 'c');
    await writeFile(join(lib, '\uFFFD\uFFFD.jpg'), 'real');
    // Valid UTF-8 beginning with a byte order mark: the mark is part of the name, not dropped.
    await writeFile(join(lib, '\uFEFFbom.jpg'), 'marked');
    await writeFile(join(lib, 'bom.jpg'), 'plain');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--no-cache')).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 6, planned: 2, skipped: 4, failed: 0 });
    const outcomes = summary.reports.map((r: { path: string; outcome: string; reason: string }) => [
      r.path,
      r.outcome,
      r.outcome === 'skipped' ? /not valid UTF-8/.test(r.reason) : r.reason,
    ]);
    expect(outcomes).toEqual([
      ['m/\\xff\\xfd.jpg', 'skipped', true],
      ['m/\\xff\\xfe.jpg', 'skipped', true],
      ['m/bad\\xff', 'skipped', true],
      ['m/bom.jpg', 'planned', 'new'],
      ['m/\uFEFFbom.jpg', 'skipped', false],
      ['m/\uFFFD\uFFFD.jpg', 'planned', 'new'],
    ]);
  });

  it('--exclude leaves out what its patterns match, by the path under the folder: not listed, not hashed, counted apart', async () => {
    const lib = join(dir, 'lib-exclude');
    const files = [
      'a.jpg',
      'a.tmp',
      'sub/b.tmp',
      'cache/x.jpg',
      'sub/cache/y.jpg',
      '.DS_Store',
      'keep/.DS_Store',
      'thumbs/t.jpg',
      'thumbs/deep/t.jpg',
      'notes.txt',
      'sub/notes.txt',
    ];
    for (const file of files) {
      await mkdir(join(lib, file, '..'), { recursive: true });
      await writeFile(join(lib, file), file);
    }
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    const patterns = ['*.tmp', '/cache/', '.DS_Store', 'thumbs/*.jpg', '/notes.txt'];
    const flags = patterns.flatMap((p) => ['--exclude', p]);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--no-cache', ...flags)).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 4, excluded: 7, planned: 4, bytesHashed: 5 + 15 + 13 + 17 });
    expect(summary.reports.map((r: { path: string }) => r.path)).toEqual([
      'm/a.jpg',
      'm/sub/cache/y.jpg',
      'm/sub/notes.txt',
      'm/thumbs/deep/t.jpg',
    ]);
    // Under any folder: a trailing slash without a leading one.
    const h2 = harness(route);
    expect(await h2.run('sync', lib, 'm', '--dry-run', '--no-cache', '--exclude', 'cache/')).toBe(0);
    expect(h2.out()).toContain('9 file(s) (2 excluded) in ');
    // A leading ! is part of a name, not a negation that would leave out all but one file.
    const h4 = harness(route);
    expect(await h4.run('sync', lib, 'm', '--dry-run', '--json', '--no-cache', '--exclude', '!a.jpg')).toBe(
      0,
    );
    expect(JSON.parse(h4.out())).toMatchObject({ files: 11, excluded: 0 });
    // An empty pattern is a usage error, before anything is read.
    const h3 = harness(route);
    expect(await h3.run('sync', lib, 'm', '--dry-run', '--exclude', ' ')).toBe(2);
    expect(h3.err()).toContain('expected a pattern');
  });

  it('a file or a folder on its way replaced by a symbolic link after the listing is not followed: what it points to is never read (probe cli)', async () => {
    // Someone who can write the folder (a shared uploads folder) but not read the secret swaps
    // names for links while sync reads the feed, so that a sync run by a user who can read it
    // uploads the secret under their names.
    const lib = join(dir, 'lib-swapped');
    const outside = join(dir, 'outside-swapped');
    await mkdir(join(lib, 'sub'), { recursive: true });
    await mkdir(outside, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'mine');
    await writeFile(join(lib, 'sub', 'b.png'), 'mine too');
    await writeFile(join(lib, 'c.png'), 'a folder soon');
    await writeFile(join(outside, 'secret'), 'the secret');
    await writeFile(join(outside, 'b.png'), 'the other secret');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    // The mirror's heads hold the secrets' content: a file reported unchanged was read through the link.
    const heads = feed([[change('m/a.png', 1, 'the secret'), change('m/sub/b.png', 1, 'the other secret')]]);
    let swapped = false;
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/changes' && !swapped) {
        swapped = true;
        execFileSync('ln', ['-sfn', join(outside, 'secret'), join(lib, 'a.png')]);
        execFileSync('rm', ['-r', join(lib, 'sub')]);
        execFileSync('ln', ['-s', outside, join(lib, 'sub')]);
        execFileSync('rm', [join(lib, 'c.png')]);
        execFileSync('mkdir', [join(lib, 'c.png')]);
      }
      return heads(url, init);
    };
    const h = harness(route);
    await h.run('sync', lib, 'm', '--dry-run', '--json', '--no-cache');
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 3, unchanged: 0, bytesHashed: 0 });
    const outcomes = summary.reports.map((r: { path: string; outcome: string; reason: string }) => [
      r.path,
      r.outcome,
      r.reason,
    ]);
    expect(outcomes).toEqual([
      ['m/a.png', 'skipped', 'a symbolic link: sync does not follow links (since it was listed)'],
      ['m/c.png', 'skipped', 'not a regular file (a folder) (since it was listed)'],
      ['m/sub/b.png', 'failed', expect.stringMatching(/not inside the folder any more: .*symbolic link/)],
    ]);
  });

  it('a --cache inside the folder leaves out the cache and its temporary files only, not a file whose name merely starts with its name (probe cli)', async () => {
    const lib = join(dir, 'lib-cache-inside');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'index.json'), '{}');
    await writeFile(join(lib, 'index.json.0a1b2c3d.tmp'), 'a save cut short');
    await writeFile(join(lib, 'index.json.bak'), "the owner's own backup");
    await writeFile(join(lib, 'index.json.d'), 'and another file');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--cache', join(lib, 'index.json'))).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary.reports.map((r: { path: string; outcome: string }) => [r.path, r.outcome])).toEqual([
      ['m/index.json.bak', 'planned'],
      ['m/index.json.d', 'planned'],
    ]);
    expect(summary.files).toBe(2);
  });

  it('a --cache inside the folder by way of a symbolic link is left out too (docwalk)', async () => {
    // Named through a link to the folder (or with the folder named through a link), the cache was
    // taken for one of the folder's files: each run uploaded it (its 0600 list of the folder's
    // names, inodes and digests) as a new version, replicated to every target.
    const lib = join(dir, 'lib-cache-linked');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    await writeFile(join(lib, 'cache.json'), '{}');
    await writeFile(join(lib, 'cache.json.0a1b2c3d.tmp'), 'a save cut short');
    await symlink(lib, join(dir, 'lib-cache-link'));
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    for (const [folder, cache] of [
      [lib, join(dir, 'lib-cache-link', 'cache.json')],
      [join(dir, 'lib-cache-link'), join(lib, 'cache.json')],
    ] as const) {
      const h = harness(route);
      expect(await h.run('sync', folder, 'm', '--dry-run', '--json', '--cache', cache)).toBe(0);
      const summary = JSON.parse(h.out());
      expect(
        summary.reports.map((r: { path: string; outcome: string }) => [r.path, r.outcome]),
        `${folder} with --cache ${cache}`,
      ).toEqual([['m/a.png', 'planned']]);
    }
  });

  it('--dry-run lists new and changed files, skips what the limits refuse, and sends nothing', async () => {
    const lib = join(dir, 'lib');
    await mkdir(join(lib, 'sub'), { recursive: true });
    await writeFile(join(lib, 'same.png'), 'same');
    await writeFile(join(lib, 'sub', 'changed.png'), 'changed');
    await writeFile(join(lib, 'new.png'), 'new');
    await writeFile(join(lib, 'big.png'), 'x'.repeat(200));
    await writeFile(join(lib, 'note.xyz'), 'octet');
    await untilCacheable();
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const pages = [[change('m/same.png', 2, 'same'), change('m/sub/changed.png', 1, 'before')]];
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed(pages)(url, init);
    const cache = join(dir, 'sync-cache.json');
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--cache', cache)).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({
      files: 5,
      unchanged: 1,
      planned: 2,
      skipped: 2,
      failed: 0,
      bytesSent: 0,
    });
    expect(
      summary.reports.map((r: { path: string; outcome: string; reason?: string }) => [
        r.path,
        r.outcome,
        r.reason?.split(' ')[0],
      ]),
    ).toEqual([
      ['m/big.png', 'skipped', 'larger'],
      ['m/new.png', 'planned', 'new'],
      ['m/note.xyz', 'skipped', 'content'],
      ['m/sub/changed.png', 'planned', 'changed'],
    ]);
    expect(h.requests.every((r) => r.startsWith('GET '))).toBe(true);
    expect(summary.bytesHashed).toBe('same'.length + 'changed'.length + 'new'.length);

    // The hash cache: an unchanged folder is not read again.
    const again = harness(route);
    expect(await again.run('sync', lib, 'm', '--dry-run', '--json', '--cache', cache)).toBe(0);
    expect(JSON.parse(again.out()).bytesHashed).toBe(0);
    // It names and hashes every file of the folder: its owner's alone, whatever the umask (probe leak, L4).
    expect((await stat(cache)).mode & 0o777).toBe(0o600);
  });

  it('a type the API does not accept, guessed from the extension, is claimed as application/octet-stream where the API takes that, and skipped where not (probe U9)', async () => {
    const lib = join(dir, 'lib-sidecars');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'IMG_0001.jpg'), 'a photo');
    await writeFile(join(lib, 'IMG_0001.jpg.json'), '{}');
    const sidecar = 'm/IMG_0001.jpg.json';
    const run = async (contentTypes: string[], ...flags: string[]) => {
      const claimed: string[] = [];
      const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes });
      const route: Route = (url, init) => {
        if (url.pathname === '/v1/limits') return { status: 200, body: limits };
        if (url.pathname === '/v1/uploads' && init.method === 'POST') {
          const claim = JSON.parse(String(init.body)) as { path: string; contentType: string };
          claimed.push(`${claim.path} ${claim.contentType}`);
          const answer = { status: 'committed', uploadId: `u-${claim.path}`, path: claim.path, version: 1 };
          return { status: 200, body: { ...answer, unchanged: true } };
        }
        return feed([[]])(url, init);
      };
      const h = harness(route);
      const code = await h.run('sync', lib, 'm', '--no-cache', ...flags);
      return { code, claimed, out: h.out() };
    };

    const taken = await run(['image/*', 'application/octet-stream'], '--json');
    expect(taken.code).toBe(0);
    expect(taken.claimed.sort()).toEqual([
      'm/IMG_0001.jpg image/jpeg',
      `${sidecar} application/octet-stream`,
    ]);
    const reports = JSON.parse(taken.out).reports as { path: string; fellBackFrom?: string }[];
    expect(reports.map((r) => [r.path, r.fellBackFrom])).toEqual([
      ['m/IMG_0001.jpg', undefined],
      [sidecar, 'application/json'],
    ]);
    const people = await run(['image/*', 'application/octet-stream']);
    expect(people.out).toContain(
      "application/octet-stream for 1 file(s) whose extension's type the mirror does not accept (application/json)",
    );

    // Nothing to fall back on: skipped, with the type its extension maps to.
    const refused = await run(['image/*'], '--json');
    expect(refused.code).toBe(0);
    expect(refused.claimed).toEqual(['m/IMG_0001.jpg image/jpeg']);
    expect(JSON.parse(refused.out).reports.find((r: { path: string }) => r.path === sidecar)).toEqual({
      file: join(lib, 'IMG_0001.jpg.json'),
      path: sidecar,
      size: 2,
      outcome: 'skipped',
      reason: 'content type application/json is not accepted (accepted: image/*)',
    });
  });

  it('a hash cache that cannot be saved (its folder is a file, as a full disk would) still prints the summary, exit 0, and warns', async () => {
    const lib = join(dir, 'lib-cache-unwritable');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    await untilCacheable();
    const blocker = join(dir, 'not-a-folder');
    await writeFile(blocker, 'a file where the cache folder should be');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const cache = join(blocker, 'sync-cache.json');
    const h = harness(route);
    expect(await h.run('sync', lib, 'm', '--dry-run', '--json', '--cache', cache)).toBe(0);
    const summary = JSON.parse(h.out());
    expect(summary).toMatchObject({ files: 1, planned: 1, failed: 0 });
    expect(summary.cacheError).toContain(cache);
    expect(h.err()).toMatch(/warning: the hash cache could not be saved .*not-a-folder/);
  });
});

/** A clock that moves only when told to (or slept on): progress lines come at its pace. */
function fakeClock() {
  let t = 0;
  const advance = (ms: number) => {
    t += ms;
  };
  return { now: () => t, sleep: async (ms: number) => advance(ms), advance };
}

type SyncLine = {
  phase: string;
  filesDone: number;
  filesTotal: number;
  versionsRead?: number;
  pages?: number;
  bytesHashed?: number;
};
const progressLines = (stderr: string): SyncLine[] =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as SyncLine);

/** A claim answered with a presigned PUT whose URL names the path (so the fake storage knows it). */
const pendingClaim = (path: string) => ({
  status: 201,
  body: {
    status: 'pending',
    uploadId: `u-${path}`,
    path,
    upload: {
      method: 'PUT',
      url: `https://origin.test/${encodeURIComponent(path)}?X-Amz-Signature=s`,
      headers: { 'content-type': 'image/png', 'x-amz-checksum-sha256': `${'A'.repeat(43)}=` },
      automaticHeaders: { 'content-length': '1', host: 'origin.test' },
      expiresAt: '2030-01-01T00:15:00Z',
    },
    challenge: {
      nonce: Buffer.alloc(32).toString('base64'),
      ranges: [{ offset: 0, length: 1 }],
      expiresAt: '2030-01-01T00:15:00Z',
    },
  },
});

describe('media-mirror sync progress (JSON lines on a non-TTY stderr)', () => {
  it('filesDone counts each file as its commit lands during the upload phase, not only after it', async () => {
    const lib = join(dir, 'lib-progress');
    await mkdir(lib, { recursive: true });
    const names = ['a.png', 'b.png', 'c.png', 'd.png', 'e.png', 'f.png'];
    for (const n of names) await writeFile(join(lib, n), n[0] as string);
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const clock = fakeClock();
    // The feed holds what storage was sent: each PUT commits at once; the cursor is an index.
    const committed: ReturnType<typeof change>[] = [];
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/uploads' && init.method === 'POST')
        return pendingClaim((JSON.parse(String(init.body)) as { path: string }).path);
      if (url.pathname === '/v1/changes') {
        const from = Number(url.searchParams.get('cursor') ?? '0');
        return { status: 200, body: { changes: committed.slice(from), cursor: String(committed.length) } };
      }
      return notFound;
    };
    const put: CliIo['putFile'] = async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname.slice(1));
      clock.advance(3_000); // a slow PUT: every file sent is a progress line of its own
      committed.push(change(path, 1, path.slice(2, 3)));
    };
    const h = harness(route, {}, put, { clock });
    expect(await h.run('sync', lib, 'm', '--json', '--no-cache', '--jobs', '1')).toBe(0);
    expect(JSON.parse(h.out())).toMatchObject({ files: 6, uploaded: 6, failed: 0 });
    const syncing = progressLines(h.err()).filter((l) => l.phase === 'syncing');
    expect(syncing.length).toBeGreaterThan(3);
    // Files settle while later ones are still being sent: the count grows within the phase.
    expect(Math.max(...syncing.map((l) => l.filesDone))).toBeGreaterThanOrEqual(4);
    const done = syncing.map((l) => l.filesDone);
    expect(done).toEqual([...done].sort((x, y) => x - y));
  });

  it('filesDone moves as each commit is read even when the feed never catches up while files are sent', async () => {
    // A busy mirror (other clients, this run's own workers): a version lands while each feed page
    // is read, so no page comes back empty. The files read committed count then, not once the feed
    // is caught up (probe: 0 done for ~3 minutes of a 3,000-file sync), and the run ends once its
    // own files are seen committed.
    const lib = join(dir, 'lib-busy-feed');
    await mkdir(lib, { recursive: true });
    const names = ['a.png', 'b.png', 'c.png', 'd.png', 'e.png', 'f.png'];
    for (const n of names) await writeFile(join(lib, n), n[0] as string);
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const clock = fakeClock();
    const committed: ReturnType<typeof change>[] = [];
    let others = 0;
    const busyFeed: Route = (url) => {
      const from = Number(url.searchParams.get('cursor') ?? '0');
      // After the listing, another client's commit lands per read: the feed is not caught up for
      // 1,000 reads (for ever, to this run; bounded so that a run reading to the end fails, not hangs).
      if ((from > 0 || committed.length > 0) && others < 1000)
        committed.push(change(`other/${++others}.png`, 1, `o${others}`));
      return { status: 200, body: { changes: committed.slice(from), cursor: String(committed.length) } };
    };
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/uploads' && init.method === 'POST')
        return pendingClaim((JSON.parse(String(init.body)) as { path: string }).path);
      return url.pathname === '/v1/changes' ? busyFeed(url, init) : notFound;
    };
    const put: CliIo['putFile'] = async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname.slice(1));
      clock.advance(3_000);
      committed.push(change(path, 1, path.slice(2, 3)));
      // The PUT's answer takes a few turns of the event loop: feed reads go on meanwhile.
      for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    // Each answer, as a socket's, comes in a later turn of the event loop.
    const api = harness(route).fetch;
    const fetch: FetchLike = async (input, init) => {
      await new Promise((resolve) => setImmediate(resolve));
      return api(input, init);
    };
    const h = harness(route, {}, put, { clock, fetch });
    expect(await h.run('sync', lib, 'm', '--json', '--no-cache', '--jobs', '1')).toBe(0);
    expect(JSON.parse(h.out())).toMatchObject({ files: 6, uploaded: 6, failed: 0 });
    const syncing = progressLines(h.err()).filter((l) => l.phase === 'syncing');
    // A line per file sent (bytesHashed counts them): before the last is sent, most already count.
    const whileSending = syncing.filter((l) => (l.bytesHashed ?? 0) < names.length);
    expect(whileSending.length).toBeGreaterThan(3);
    expect(whileSending.map((l) => l.filesDone).at(-1)).toBeGreaterThanOrEqual(3);
    // Its own files seen committed, the run stops reading: it does not wait for the feed to be caught up.
    expect(others).toBeLessThan(200);
  });

  it('the listing phase reports the versions and pages read so far, a line per slow page', async () => {
    const lib = join(dir, 'lib-listing');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.png'), 'a');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['image/*'] });
    const clock = fakeClock();
    const pages = [0, 1, 2, 3].map((p) => [
      change(`old/${p}-1.png`, 1, 'x'),
      change(`old/${p}-2.png`, 1, 'y'),
    ]);
    const route: Route = (url, init) => {
      if (url.pathname === '/v1/limits') return { status: 200, body: limits };
      if (url.pathname === '/v1/changes') clock.advance(3_900); // 3.9 s a page, as probed
      return feed(pages)(url, init);
    };
    const h = harness(route, {}, undefined, { clock });
    expect(await h.run('sync', lib, 'm', '--json', '--no-cache', '--dry-run')).toBe(0);
    const listing = progressLines(h.err()).filter((l) => l.phase === 'listing');
    expect(listing.map((l) => [l.versionsRead, l.pages])).toEqual([
      [0, 0],
      [2, 1],
      [4, 2],
      [6, 3],
      [8, 4],
      [8, 5], // the empty page that says the listing is caught up: a request too
    ]);
  });
});

describe('hostile names and messages on a terminal (not --json)', () => {
  // ESC [2J clears the screen, ESC ]0;...BEL sets the window title, ESC [1A ESC [2K erases the line above.
  const hostile = 'e\x1b[2J\x1b]0;PWNED\x07\x1b[1A\x1b[2K\u202egnp.txt';
  const shown = 'e\\x1b[2J\\x1b]0;PWNED\\x07\\x1b[1A\\x1b[2K\\u202egnp.txt';
  /** Nothing a terminal would act on or hide: the line breaks between lines only. */
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
  const inert = (text: string) => expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
  const refusal = {
    status: 400,
    body: { error: { code: 'invalid_path', message: `refused ${hostile}`, field: 'path' } },
  };

  it('sync: a file name the rules refuse is shown escaped in its "skipped" line; --json keeps the name', async () => {
    const lib = join(dir, 'lib-hostile');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, hostile), 'z');
    await writeFile(join(lib, 'line\nbreak.png'), 'y');
    await writeFile(join(lib, 'café 日本 🎉.png'), 'x');
    const limits = limitsAnswer({ maxUploadBytes: 100, contentTypes: ['*/*'] });
    const route: Route = (url, init) =>
      url.pathname === '/v1/limits' ? { status: 200, body: limits } : feed([[]])(url, init);
    const h = harness(route);
    expect(await h.run('sync', lib, 'S7', '--dry-run', '--no-cache')).toBe(0);
    inert(h.out());
    expect(h.out()).toContain(`skipped: S7/${shown}: `);
    expect(h.out()).toContain('skipped: S7/line\\x0abreak.png: ');
    expect(h.out()).toContain('would upload (new): S7/café 日本 🎉.png');

    const json = harness(route);
    expect(await json.run('sync', lib, 'S7', '--dry-run', '--no-cache', '--json')).toBe(0);
    const paths = JSON.parse(json.out()).reports.map((r: { path: string }) => r.path);
    expect(paths).toContain(`S7/${hostile}`);
  });

  it('upload: the usage error naming a path the rules refuse is escaped', async () => {
    const h = harness(() => notFound);
    expect(await h.run('upload', 'a.txt', `t/esc${hostile}`)).toBe(2);
    inert(h.err());
    expect(h.err()).toContain(`t/esc${shown}`);
    expect(h.requests).toEqual([]);
  });

  it("ls, log, get, rm, restore, status: a server's message is escaped on stderr", async () => {
    for (const args of [
      ['ls', 'a/'],
      ['log', 'a.png'],
      ['get', 'a.png'],
      ['rm', 'a.png'],
      ['restore', 'a.png', '1'],
      ['status', 'a.png'],
      ['status'],
      ['limits'],
    ]) {
      const h = harness(() => refusal);
      expect(await h.run(...args), args.join(' ')).not.toBe(0);
      inert(h.err());
      expect(h.err(), args.join(' ')).toContain(shown);
    }
  });

  it('ls and status: paths and reasons the server sends are escaped, other text left as it is', async () => {
    const listed = { ...change(`a/${hostile}`, 1, 'x'), path: `a/${hostile}` };
    const { deleted: _d, ...file } = listed;
    const ls = harness(() => ({
      status: 200,
      body: { prefix: 'a/', files: [file, { ...file, path: 'a/café 🎉.png' }] },
    }));
    expect(await ls.run('ls', 'a/')).toBe(0);
    inert(ls.out());
    expect(ls.out()).toContain(`a/${shown}`);
    expect(ls.out()).toContain('a/café 🎉.png');

    const head = { ...change('a.png', 2, 'x') };
    const { path: _p, ...headVersion } = head;
    const status = harness(() => ({
      status: 200,
      body: {
        path: 'a.png',
        head: headVersion,
        targets: [
          {
            id: 'eu',
            kind: 's3',
            appliedVersion: 1,
            status: 'failed',
            appliedAt: at,
            failure: { version: 2, at, reason: `copy failed: ${hostile}` },
          },
        ],
      },
    }));
    expect(await status.run('status', 'a.png')).toBe(0);
    inert(status.out());
    expect(status.out()).toContain(`copy failed: ${shown}`);
  });
});

describe('media-mirror status <path> of a file a pull target lacks', () => {
  it("names what its agent reports (disk full), which the path's own row does not say (probe C1)", async () => {
    const head = {
      version: 2,
      sha256: sha('x'),
      size: 1,
      contentType: 'image/png',
      committedAt: at,
      deleted: false,
    };
    const row = { kind: 'pull', status: 'pending', appliedAt: null };
    const h = harness((url) => {
      if (url.pathname === '/v1/files/a.png')
        return {
          status: 200,
          body: {
            path: 'a.png',
            head,
            targets: [
              { id: 'dc1', appliedVersion: 1, ...row },
              { id: 'dc2', appliedVersion: 2, ...row, status: 'copied', appliedAt: at },
            ],
          },
        };
      if (url.pathname === '/v1/targets')
        return {
          status: 200,
          body: {
            targets: [
              {
                id: 'dc1',
                kind: 'pull',
                lag: { lagSeconds: 40, pending: 3, pendingCapped: false, agentConditions: ['disk-full'] },
              },
              {
                id: 'dc2',
                kind: 'pull',
                lag: {
                  lagSeconds: 0,
                  pending: 0,
                  pendingCapped: false,
                  agentConditions: ['read-only-filesystem'],
                },
              },
            ],
          },
        };
      return notFound;
    });
    expect(await h.run('status', 'a.png'), h.err()).toBe(0);
    expect(h.out()).toContain("dc1's agent reports disk-full: it retries until that clears");
    // dc2 holds the head: its agent's state says nothing about this file.
    expect(h.out()).not.toContain("dc2's agent");
    // A target that holds the file costs no request for the targets (the health check, run
    // alongside the file's, gives the API's clock).
    const held = harness((url) =>
      url.pathname === '/v1/files/a.png'
        ? {
            status: 200,
            body: {
              path: 'a.png',
              head,
              targets: [{ id: 'dc2', appliedVersion: 2, ...row, status: 'copied', appliedAt: at }],
            },
          }
        : notFound,
    );
    expect(await held.run('status', 'a.png')).toBe(0);
    expect(held.requests).toEqual(['GET /v1/files/a.png', 'GET /v1/health']);
  });
});
