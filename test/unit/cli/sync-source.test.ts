/**
 * The folder source lists what it can read: an unreadable subfolder (EACCES, which root never
 * meets, so it is simulated here) becomes an entry that fails on its own, and the rest is listed.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const locked = new Set<string>();
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    readdir: (async (path: string, options?: unknown) => {
      if (locked.has(String(path))) {
        throw Object.assign(new Error(`EACCES: permission denied, scandir '${String(path)}'`), {
          code: 'EACCES',
        });
      }
      return real.readdir(path, options as never);
    }) as typeof real.readdir,
  };
});

const { folderSource } = await import('../../../cli/sync-source.ts');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sync-source-'));
  await mkdir(join(dir, 'open', 'deeper'), { recursive: true });
  await mkdir(join(dir, 'closed'), { recursive: true });
  await writeFile(join(dir, 'top.txt'), 'top');
  await writeFile(join(dir, 'open', 'a.txt'), 'a');
  await writeFile(join(dir, 'open', 'deeper', 'b.txt'), 'b');
  await writeFile(join(dir, 'closed', 'hidden.txt'), 'hidden');
  locked.add(join(dir, 'closed'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('folderSource', () => {
  it('an unreadable subfolder is one failing entry; every readable file is still listed', async () => {
    const source = folderSource(dir, null);
    const entries = await source.list();
    expect(entries.map((e) => e.rel)).toEqual(['closed', 'open/a.txt', 'open/deeper/b.txt', 'top.txt']);
    const closed = entries.find((e) => e.rel === 'closed');
    await expect(source.stat(closed as never)).rejects.toThrow(/cannot read folder .*EACCES/);
    expect((await source.stat(entries[1] as never)).size).toBe(1);
  });

  it('the folder itself unreadable: the whole run fails, naming it', async () => {
    locked.add(dir);
    try {
      await expect(folderSource(dir, null).list()).rejects.toThrow(/cannot read folder/);
    } finally {
      locked.delete(dir);
    }
  });
});
