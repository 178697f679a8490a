/**
 * The CLI's file verbs and `GET /v1/limits` through the local stack: the limits come from the
 * deployment's configuration; `sync` sends only what the mirror lacks (content it holds
 * elsewhere costs no bytes); `ls`, `log`, `get`, `rm` and `restore` read and change what `sync`
 * wrote.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iamSigner } from '../../cli/iam-auth.ts';
import { sleep } from '../../common/retry.ts';
import { blobKey } from '../../contracts/ledger-keys.ts';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { uploadFile } from '../../web/client/index.ts';
import { untilCacheable } from '../support/library.ts';
import { localApi } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
  limits: {
    maxUploadBytes: 64 * 1024 * 1024,
    multipartThresholdBytes: 6 * 1024 * 1024,
    contentTypes: ['image/*', 'text/plain'],
    presignTtlSeconds: 600,
  },
});

let stack: TestStack;
let work: string;
let sandbox: Sandbox;

beforeAll(async () => {
  stack = await startTestStack('cli-verbs', { topology, env: {}, schedules: false });
  ({ sandbox, dir: work } = stack);
}, 120_000);

afterAll(() => stack?.stop());

const cli = (...args: string[]) => stack.cli(...args);

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

describe('GET /v1/limits on the local stack', () => {
  it("answers the deployment's configured limits, and the CLI prints them", async () => {
    const answer = await localApi(sandbox.endpoints).call('GET', '/v1/limits');
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      maxUploadBytes: 64 * 1024 * 1024,
      multipartThresholdBytes: 6 * 1024 * 1024,
      partBytes: 8 * 1024 * 1024,
      minPartBytes: 5 * 1024 * 1024,
      maxPartBytes: 5 * 1024 ** 3,
      maxParts: 10_000,
      contentTypes: ['image/*', 'text/plain'],
      presignTtlSeconds: 600,
      maxPathBytes: 1024,
      defaultPageSize: 100,
      maxPageSize: 1000,
      maxRequestBodyBytes: 1024 * 1024,
      maxPartsPerRequest: 1000,
    });
    const printed = await cli('limits', '--json');
    expect(printed.code).toBe(0);
    expect(JSON.parse(printed.out)).toEqual(answer.body);
  });

  it('needs the token like every route but health', async () => {
    const response = await fetch(`${sandbox.endpoints.api}/v1/limits`);
    expect(response.status).toBe(401);
  });

  it('answers HEAD as GET without the body: health, a file that exists (200), one that does not (404)', async () => {
    const { api, token } = sandbox.endpoints;
    const health = await fetch(`${api}/v1/health`, { method: 'HEAD' });
    expect(health.status).toBe(200);
    const file = join(work, 'head.txt');
    await writeFile(file, `head ${Date.now()}`);
    expect((await cli('upload', file, 'head/exists.txt', '--json')).code).toBe(0);
    const auth = { authorization: `Bearer ${token}` };
    const exists = await fetch(`${api}/v1/files/head%2Fexists.txt`, { method: 'HEAD', headers: auth });
    expect(exists.status).toBe(200);
    expect(exists.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await exists.text()).toBe('');
    // Its Content-Length is the one GET sends (RFC 9110, 8.6), not the empty body's (probe api2, A2-4).
    // A file's answer grows as its targets apply it: HEAD is compared with GETs on either side of it
    // that agree (the file stood still in between).
    const getLength = async (route: string) =>
      Buffer.byteLength(await (await fetch(`${api}${route}`, { headers: auth })).text());
    for (const route of ['/v1/files/head%2Fexists.txt', '/v1/limits']) {
      const seen: [number, string | null, number][] = [];
      for (let attempt = 0; attempt < 20; attempt++) {
        const before = await getLength(route);
        const head = await fetch(`${api}${route}`, { method: 'HEAD', headers: auth });
        seen.push([before, head.headers.get('content-length'), await getLength(route)]);
        if (before === seen.at(-1)?.[2]) break;
        await sleep(250);
      }
      const [length, headLength] = seen.at(-1) ?? [0, null];
      expect(length).toBeGreaterThan(10);
      expect(headLength, `${route}: ${JSON.stringify(seen)}`).toBe(String(length));
    }
    const missing = await fetch(`${api}/v1/files/head%2Fmissing.txt`, { method: 'HEAD', headers: auth });
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe('');
  });
});

describe('a content link to a blob storage has lost', () => {
  it('answers 404 naming the loss (GET and HEAD), not a 302 to a URL that then 404s', async () => {
    const { api, token } = sandbox.endpoints;
    const auth = { authorization: `Bearer ${token}` };
    const body = `lost ${Date.now()}`;
    const file = join(work, 'lost.txt');
    await writeFile(file, body);
    expect((await cli('upload', file, 'lost/blob.txt', '--json')).code).toBe(0);
    const link = `${api}/v1/files/lost%2Fblob.txt/content`;
    const before = await fetch(link, { headers: auth, redirect: 'manual' });
    expect(before.status).toBe(302);
    // Lost behind the system's back: every version of the blob's object deleted.
    const key = blobKey(sha(body));
    const listed = await stack.s3.send(
      new ListObjectVersionsCommand({ Bucket: sandbox.endpoints.originBucket, Prefix: key }),
    );
    for (const v of listed.Versions ?? [])
      await stack.s3.send(
        new DeleteObjectCommand({ Bucket: sandbox.endpoints.originBucket, Key: key, VersionId: v.VersionId }),
      );
    const got = await fetch(link, { headers: auth, redirect: 'manual' });
    expect(got.status).toBe(404);
    const { error } = (await got.json()) as { error: { code: string; field: string; message: string } };
    expect(error).toMatchObject({ code: 'not_found', field: 'path' });
    expect(error.message).toMatch(/lost\/blob\.txt.*content is missing from storage/);
    const head = await fetch(link, { method: 'HEAD', headers: auth, redirect: 'manual' });
    expect([head.status, await head.text()]).toEqual([404, '']);
    // An older version asked for by number: the same, naming the version.
    const older = await fetch(`${link}?version=1`, { headers: auth, redirect: 'manual' });
    expect(older.status).toBe(404);
    expect(((await older.json()) as { error: { field: string } }).error.field).toBe('version');
  });
});

describe('--auth iam: the CLI against an API behind IAM', () => {
  it("signs every request with SigV4 and the AWS credentials: the front lets the stack's own keys in, and no others", async () => {
    const { accessKeyId, secretAccessKey } = sandbox.endpoints.s3.credentials;
    const iam = stack.cliWith({
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: sandbox.endpoints.s3.region,
      MIRROR_API_AUTH: 'iam',
    });
    const file = join(work, 'signed.txt');
    await writeFile(file, `signed ${Date.now()}`);
    const up = await iam('upload', file, 'iam dir/signed+1.txt', '--json');
    expect(up.code, up.err).toBe(0);
    expect(JSON.parse(up.out)).toMatchObject({ status: 'committed', version: 1 });
    // A space in the query (the prefix) is signed as sent: %20, never the form encoding's +.
    const listed = await iam('ls', 'iam dir/', '--json');
    expect(listed.code, listed.err).toBe(0);
    expect(JSON.parse(listed.out).files.map((f: { path: string }) => f.path)).toEqual([
      'iam dir/signed+1.txt',
    ]);
    // The stack's keys, signed for another region than the stack's: refused, as API Gateway does.
    const elsewhere = stack.cliWith({
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: 'eu-west-3',
      MIRROR_API_AUTH: 'iam',
    });
    expect((await elsewhere('ls', 'iam dir/')).code).toBe(1);
    const stranger = stack.cliWith({
      AWS_ACCESS_KEY_ID: 'AKIDSTRANGER',
      AWS_SECRET_ACCESS_KEY: 'not-the-stack-secret',
      AWS_REGION: sandbox.endpoints.s3.region,
      MIRROR_API_AUTH: 'iam',
    });
    const refused = await stranger('ls', 'iam dir/', '--json');
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.out)).toMatchObject({ error: { status: 403 } });
  });

  it("the web client's uploadFile signs with `sign` instead of a token (a page holding AWS credentials); other keys are refused", async () => {
    const { accessKeyId, secretAccessKey } = sandbox.endpoints.s3.credentials;
    const api = sandbox.endpoints.api;
    const signerFor = (keys: { AWS_ACCESS_KEY_ID: string; AWS_SECRET_ACCESS_KEY: string }) =>
      iamSigner(api, { ...keys, AWS_REGION: sandbox.endpoints.s3.region });
    const sign = await signerFor({ AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey });
    const bytes = new TextEncoder().encode(`signed in the page ${Date.now()}`);
    const result = await uploadFile(new Blob([bytes], { type: 'text/plain' }), {
      api,
      sign,
      path: 'iam dir/page.txt',
      workerUrl: null,
    });
    expect(result).toMatchObject({ status: 'committed', version: 1, deduplicated: false });
    const stranger = await signerFor({ AWS_ACCESS_KEY_ID: 'AKIDSTRANGER', AWS_SECRET_ACCESS_KEY: 'nope' });
    const refused = await uploadFile(new Blob([bytes], { type: 'text/plain' }), {
      api,
      sign: stranger,
      path: 'iam dir/stranger.txt',
      workerUrl: null,
      retries: 0,
    }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 403 });
    await expect(uploadFile(new Blob([bytes]), { api, path: 'x.txt', token: 't', sign })).rejects.toThrow(
      /one of `token` or `sign`/,
    );
  });
});

describe("an Idempotency-Key on the local stack is its caller's", () => {
  it("a signed caller's retry gets its own first answer; the token's caller sending the same key and body gets an upload of its own", async () => {
    const { api, token } = sandbox.endpoints;
    const { accessKeyId, secretAccessKey } = sandbox.endpoints.s3.credentials;
    const sign = await iamSigner(api, {
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: sandbox.endpoints.s3.region,
    });
    const bytes = `two callers ${Date.now()}`;
    const body = JSON.stringify({
      path: 'idem/callers.txt',
      size: bytes.length,
      sha256: sha(bytes),
      contentType: 'text/plain',
    });
    const key = crypto.randomUUID();
    const url = `${api}/v1/uploads`;
    const headers = { 'content-type': 'application/json', 'idempotency-key': key };
    const claim = async (auth: 'iam' | 'token') => {
      const authorization =
        auth === 'iam'
          ? await sign({ method: 'POST', url, headers, body })
          : { authorization: `Bearer ${token}` };
      const response = await fetch(url, { method: 'POST', headers: { ...headers, ...authorization }, body });
      return {
        status: response.status,
        replayed: response.headers.get('idempotent-replayed'),
        body: await response.json(),
      };
    };
    const signed = await claim('iam');
    expect(signed).toMatchObject({ status: 201, replayed: null });
    expect(await claim('iam')).toEqual({ ...signed, replayed: 'true' });
    const tokened = await claim('token');
    expect(tokened).toMatchObject({ status: 201, replayed: null });
    expect(tokened.body.uploadId).not.toBe(signed.body.uploadId);
    expect(tokened.body.upload.url).not.toBe(signed.body.upload.url);
    expect(await claim('token')).toEqual({ ...tokened, replayed: 'true' });
  });
});

describe('sync, ls, log, get and rm through the local stack', () => {
  it('sync sends what is new or changed; ls, log, get, rm and restore see and change it', async () => {
    const lib = join(work, 'lib');
    await mkdir(join(lib, 'cats'), { recursive: true });
    await writeFile(join(lib, 'cats', 'a.jpg'), 'cat a\n'.repeat(100));
    await writeFile(join(lib, 'cats', 'b.png'), 'cat b\n'.repeat(100));
    await writeFile(join(lib, 'notes.txt'), 'notes\n');
    await writeFile(join(lib, 'tool.exe'), 'not accepted here');
    await untilCacheable();

    const first = await cli('sync', lib, 'library', '--json');
    expect(first.code, first.err).toBe(0);
    const one = JSON.parse(first.out);
    expect(one).toMatchObject({ files: 4, uploaded: 3, unchanged: 0, skipped: 1, failed: 0 });
    expect(one.bytesSent).toBe(600 + 600 + 6);
    expect(one.reports.find((r: { path: string }) => r.path === 'library/tool.exe').reason).toMatch(
      /application\/octet-stream is not accepted/,
    );

    const listed = await cli('ls', 'library/', '--json');
    expect(listed.code).toBe(0);
    const files = JSON.parse(listed.out).files as { path: string; version: number; sha256: string }[];
    expect(files.map((f) => [f.path, f.version, f.sha256])).toEqual([
      ['library/cats/a.jpg', 1, sha('cat a\n'.repeat(100))],
      ['library/cats/b.png', 1, sha('cat b\n'.repeat(100))],
      ['library/notes.txt', 1, sha('notes\n')],
    ]);

    // One file changed, one copied under a new name: only the change is sent, the copy is proven.
    await writeFile(join(lib, 'notes.txt'), 'notes, edited\n');
    await writeFile(join(lib, 'cats', 'a-copy.jpg'), 'cat a\n'.repeat(100));
    await untilCacheable();
    const second = JSON.parse((await cli('sync', lib, 'library', '--json')).out);
    expect(second).toMatchObject({
      files: 5,
      unchanged: 2,
      uploaded: 1,
      deduplicated: 1,
      skipped: 1,
      failed: 0,
    });
    expect(second.bytesSent).toBe('notes, edited\n'.length);

    const log = await cli('log', 'library/notes.txt', '--json');
    expect(
      JSON.parse(log.out).versions.map((v: { version: number; sha256: string }) => [v.version, v.sha256]),
    ).toEqual([
      [2, sha('notes, edited\n')],
      [1, sha('notes\n')],
    ]);

    const got = await cli('get', 'library/notes.txt', 'fetched.txt');
    expect(got.code, got.err).toBe(0);
    expect(await readFile(join(work, 'fetched.txt'), 'utf8')).toBe('notes, edited\n');
    // An older version's bytes, verified against that version; the program's own --version is
    // only the first argument's.
    const old = await cli('get', 'library/notes.txt', 'v1.txt', '--version', '1');
    expect(old.code, old.err).toBe(0);
    expect(await readFile(join(work, 'v1.txt'), 'utf8')).toBe('notes\n');
    expect((await cli('get', 'library/notes.txt', 'v9.txt', '--version', '9')).code).toBe(3);
    expect((await cli('--version')).out).toMatch(/^\d+\.\d+\.\d+/);
    // Through a symlink: the file it points to gets the bytes, the link stays a link.
    await symlink('fetched.txt', join(work, 'link.txt'));
    await writeFile(join(work, 'fetched.txt'), 'stale');
    expect((await cli('get', 'library/notes.txt', 'link.txt')).code).toBe(0);
    expect((await lstat(join(work, 'link.txt'))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(work, 'fetched.txt'), 'utf8')).toBe('notes, edited\n');
    // A device, a FIFO or a socket is not replaced by a file (as root, /dev/null would be).
    execFileSync('mkfifo', [join(work, 'pipe')]);
    const intoFifo = await cli('get', 'library/notes.txt', 'pipe');
    expect(intoFifo.code).toBe(2);
    expect(intoFifo.err).toMatch(/not a regular file/);
    expect((await lstat(join(work, 'pipe'))).isFIFO()).toBe(true);
    const cacheFifo = await cli('sync', lib, 'library', '--cache', join(work, 'pipe'));
    expect(cacheFifo.code).toBe(2);
    expect(cacheFifo.err).toMatch(/not a regular file/);
    expect((await lstat(join(work, 'pipe'))).isFIFO()).toBe(true);

    expect((await cli('rm', 'library/notes.txt', '--if-version', '1')).code).toBe(4);
    const removed = await cli('rm', 'library/notes.txt', '--if-version', '2', '--json');
    expect(removed.code, removed.err).toBe(0);
    expect(JSON.parse(removed.out)).toEqual({
      status: 'committed',
      path: 'library/notes.txt',
      version: 3,
      deleted: true,
    });
    const after = JSON.parse((await cli('ls', 'library/', '--json')).out).files.map(
      (f: { path: string }) => f.path,
    );
    expect(after).toEqual(['library/cats/a-copy.jpg', 'library/cats/a.jpg', 'library/cats/b.png']);
    expect((await cli('get', 'library/notes.txt')).code).toBe(3);

    // Restore: version 1's content as version 4, no bytes sent; a stale --if-version is exit 4.
    expect((await cli('restore', 'library/notes.txt', '1', '--if-version', '2')).code).toBe(4);
    const restored = await cli('restore', 'library/notes.txt', '1', '--if-version', '3', '--json');
    expect(restored.code, restored.err).toBe(0);
    expect(JSON.parse(restored.out)).toEqual({
      status: 'committed',
      path: 'library/notes.txt',
      version: 4,
      restoredFrom: 1,
      sha256: sha('notes\n'),
    });
    const back = await cli('get', 'library/notes.txt', 'restored.txt');
    expect(back.code, back.err).toBe(0);
    expect(await readFile(join(work, 'restored.txt'), 'utf8')).toBe('notes\n');
    expect((await cli('restore', 'library/notes.txt', '3')).code).toBe(1);
    expect((await cli('restore', 'library/notes.txt', '9')).code).toBe(3);
    await rm(join(lib, 'notes.txt'));
    expect((await cli('log', 'library/nothing.txt')).code).toBe(3);

    // A touched but unchanged file is hashed again and not sent; --dry-run sends nothing.
    const later = new Date(Date.now() + 60_000);
    await utimes(join(lib, 'cats', 'b.png'), later, later);
    await writeFile(join(lib, 'cats', 'c.png'), 'cat c\n');
    const dry = JSON.parse((await cli('sync', lib, 'library', '--dry-run', '--json')).out);
    expect(dry).toMatchObject({ planned: 1, bytesSent: 0, bytesHashed: 600 + 6 });
    expect(
      dry.reports
        .filter((r: { outcome: string }) => r.outcome === 'planned')
        .map((r: { path: string; reason: string }) => [r.path, r.reason]),
    ).toEqual([['library/cats/c.png', 'new']]);
  }, 120_000);
});

describe('sync and names that are one path', () => {
  it('two files whose names differ only in Unicode normalization are refused, neither sent (exit 1)', async () => {
    // "é" composed (NFC) and decomposed (NFD): two files here, one path in the mirror (NFC), so one
    // would silently replace the other, and every later sync would swap them back.
    const lib = join(work, 'nfc-lib');
    await mkdir(lib, { recursive: true });
    const composed = 'caf\u00e9.txt';
    const decomposed = 'cafe\u0301.txt';
    await writeFile(join(lib, composed), 'composed\n');
    await writeFile(join(lib, decomposed), 'decomposed\n');
    await writeFile(join(lib, 'plain.txt'), 'plain\n');
    const run = await cli('sync', lib, 'nfc', '--no-cache', '--json');
    expect(run.code, run.err).toBe(1);
    const summary = JSON.parse(run.out);
    expect(summary).toMatchObject({ files: 3, uploaded: 1, failed: 2 });
    const reports = summary.reports as { file: string; outcome: string; reason?: string }[];
    const clashing = reports.filter((f) => f.outcome === 'failed');
    expect(clashing.map((f) => f.file.normalize('NFC')).sort()).toEqual([
      join(lib, composed),
      join(lib, composed),
    ]);
    for (const f of clashing) expect(f.reason).toMatch(/same mirror path.*normaliz/);
    const live = JSON.parse((await cli('ls', 'nfc/', '--json')).out).files.map(
      (f: { path: string }) => f.path,
    );
    expect(live).toEqual(['nfc/plain.txt']);
  });
});

describe('GET /v1/files on the local stack', () => {
  it('pages through the live files under a prefix as ls shows them; a bad prefix or cursor is a 400 naming it', async () => {
    const api = localApi(sandbox.endpoints);
    const shown = JSON.parse((await cli('ls', 'library/', '--json')).out).files.map(
      (f: { path: string }) => f.path,
    );
    expect(shown.length).toBeGreaterThan(1);
    const paged: string[] = [];
    let cursor = '';
    for (let pages = 0; pages < 20; pages++) {
      const page = await api.call(
        'GET',
        `/v1/files?prefix=library%2F&limit=1&cursor=${encodeURIComponent(cursor)}`,
      );
      expect(page.status).toBe(200);
      paged.push(...page.body.files.map((f: { path: string }) => f.path));
      if (page.body.cursor === undefined) break;
      cursor = page.body.cursor;
    }
    expect(paged).toEqual(shown);

    const bare = await api.call('GET', '/v1/files?prefix=library');
    expect(bare.status).toBe(400);
    expect(bare.body.error).toMatchObject({ code: 'invalid', field: 'prefix' });
    const dots = await api.call('GET', '/v1/files?prefix=library%2F..%2F');
    expect(dots.body.error).toMatchObject({ code: 'invalid_path', field: 'prefix' });
    const other = await api.call('GET', `/v1/files?prefix=photos%2F&cursor=${encodeURIComponent(cursor)}`);
    expect(other.body.error).toMatchObject({ code: 'invalid_cursor', field: 'cursor' });
    const big = await api.call('GET', '/v1/files?limit=1001');
    expect(big.body.error).toMatchObject({ code: 'invalid', field: 'limit' });
  });
});
