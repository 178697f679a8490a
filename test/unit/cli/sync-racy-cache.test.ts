/**
 * The hash cache trusts a file's stamp (size, modification and change times, inode) only once the
 * file system's clock has moved past it. A clock that ticks coarsely (FAT's 2 s, exFAT's 10 ms, the
 * kernel's jiffy before Linux 6.13's fine-grained timestamps, an NFS server's) gives a rewrite made
 * in the same tick as the write before it the very same stamp: the same race git's index calls
 * "racily clean". The file system here has fine timestamps, so a clock that does not tick at all
 * is simulated: lstat answers one frozen time for the library's file.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const frozen = new Map<string, number>();
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    lstat: (async (path: string, options?: unknown) => {
      const info = await real.lstat(path, options as never);
      const at = frozen.get(String(path));
      if (at === undefined) return info;
      return Object.assign(info, { mtimeMs: at, ctimeMs: at });
    }) as typeof real.lstat,
  };
});

const { runCli } = await import('../../../cli/program.ts');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-racy-cache-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A mirror whose only file, m/a.png, holds `content`. */
function mirror(content: string) {
  const limits = {
    maxUploadBytes: 100,
    contentTypes: ['*/*'],
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
  };
  const head = {
    path: 'm/a.png',
    version: 1,
    sha256: sha(content),
    size: content.length,
    contentType: 'image/png',
    deleted: false,
    committedAt: '2025-06-01T11:55:00.000Z',
  };
  return async (input: string) => {
    const url = new URL(input);
    const body =
      url.pathname === '/v1/limits'
        ? limits
        : url.pathname === '/v1/targets'
          ? { targets: [] }
          : { changes: url.searchParams.has('cursor') ? [] : [head], cursor: '1' };
    return new Response(JSON.stringify(body), { status: 200 });
  };
}

async function dryRun(lib: string, cache: string, content: string) {
  let stdout = '';
  const code = await runCli(
    ['node', 'media-mirror', 'sync', lib, 'm', '--dry-run', '--json', '--cache', cache],
    {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: () => true },
      env: { MIRROR_API_URL: 'https://api.test', MIRROR_API_TOKEN: 't' },
      cwd: dir,
      fetch: mirror(content),
    },
  );
  return { code, summary: JSON.parse(stdout) };
}

describe('sync hash cache, a file rewritten within one tick of the file system clock', () => {
  it('is hashed again on the next run, not taken as unchanged for good (probe cli)', async () => {
    const lib = join(dir, 'lib');
    await mkdir(lib, { recursive: true });
    const file = join(lib, 'a.png');
    const cache = join(dir, 'cache.json');
    await writeFile(file, 'aaaa');
    frozen.set(file, Date.now());
    expect((await dryRun(lib, cache, 'aaaa')).summary).toMatchObject({ unchanged: 1, bytesHashed: 4 });
    // Same size, same inode, and (the clock has not ticked) the same times.
    await writeFile(file, 'bbbb');
    const { summary } = await dryRun(lib, cache, 'aaaa');
    expect(summary).toMatchObject({ unchanged: 0, planned: 1, bytesHashed: 4 });
    expect(summary.reports).toEqual([expect.objectContaining({ path: 'm/a.png', reason: 'changed' })]);
  });
});
