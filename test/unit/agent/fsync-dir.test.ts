/**
 * A file system that cannot sync a folder (fsync on a directory answers EINVAL or ENOTSUP: SMB/CIFS
 * shares, some FUSE and virtual-machine shared folders) still takes the agent's files: the file's
 * own fsync and the rename are what it can do. Before, the state could not even open (its
 * snapshot's folder sync failed) and every write failed after its rename, forever.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const unsyncable = { code: 'EINVAL' };
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: (async (path: string, ...rest: unknown[]) => {
      const handle = await real.open(path, ...(rest as [never]));
      if ((await handle.stat()).isDirectory()) {
        handle.sync = async () => {
          throw Object.assign(new Error(`${unsyncable.code}: invalid argument, fsync`), {
            code: unsyncable.code,
          });
        };
      }
      return handle;
    }) as typeof real.open,
  };
});

const { Applier } = await import('../../../agent/applier.ts');
const { SafePaths } = await import('../../../agent/safe-path.ts');
const { StateStore } = await import('../../../agent/state-store.ts');
const { BandwidthLimiter } = await import('../../../agent/util.ts');

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-fsync-dir-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('a mirror folder whose file system cannot sync folders', () => {
  for (const code of ['EINVAL', 'ENOTSUP']) {
    it(`(${code}) opens its state, applies and deletes files (probe agent3)`, async () => {
      unsyncable.code = code;
      const dir = join(base, code);
      const paths = await SafePaths.open(dir);
      const state = await StateStore.open(join(dir, '.media-mirror'), {
        targetId: 'onprem-dc1',
        table: 'ledger',
        feedShards: 1,
      });
      const bytes = Buffer.from('on a share');
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const record = (version: number, deleted: boolean) => ({
        path: 'a/b.txt',
        version,
        sha256: deleted ? null : sha256,
        size: deleted ? 0 : bytes.length,
        contentType: null,
        deleted,
        committedAt: '2024-01-01T00:00:00.000Z',
        uploadId: `u${version}`,
      });
      const applier = new Applier({
        paths,
        state,
        blobs: {
          open: async () => ({
            body: (async function* () {
              yield bytes;
            })(),
            contentLength: bytes.length,
            close: () => undefined,
          }),
        },
        ledger: {
          getVersion: async (_path, version) => record(version, version === 2),
          recordApplied: async () => undefined,
        },
        limiter: new BandwidthLimiter(undefined),
      });
      const signal = new AbortController().signal;
      expect((await applier.apply(record(1, false), { signal, source: 'queue' })).kind).toBe('applied');
      expect(await readFile(join(dir, 'a/b.txt'), 'utf8')).toBe('on a share');
      expect((await applier.apply(record(2, true), { signal, source: 'queue' })).kind).toBe('deleted');
      expect(state.get('a/b.txt')?.version).toBe(2);
      await state.close();
      const again = await StateStore.open(join(dir, '.media-mirror'), {
        targetId: 'onprem-dc1',
        table: 'ledger',
        feedShards: 1,
      });
      expect(again.get('a/b.txt')?.deleted).toBe(true);
      await again.close();
    });
  }
});
