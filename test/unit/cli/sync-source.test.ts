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

describe('bucketSource', () => {
  it('an object whose body runs past its listed size is not read on: the spool file stops there (probe cli)', async () => {
    const { Readable } = await import('node:stream');
    const { ListObjectsV2Command, S3Client } = await import('@aws-sdk/client-s3');
    const { bucketSource } = await import('../../../cli/sync-source.ts');
    // A store (S3-compatible, hostile or broken) that lists 5 bytes and then sends without end.
    let sent = 0;
    const endless = new Readable({
      read() {
        if (sent >= 1024 ** 3) return this.push(null);
        sent += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024, 1));
      },
    });
    const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    s3.send = (async (command: unknown) =>
      command instanceof ListObjectsV2Command
        ? { Contents: [{ Key: 'lib/a.jpg', Size: 5, ETag: '"e"' }], IsTruncated: false }
        : { Body: endless, ContentType: 'image/jpeg' }) as never;
    const source = bucketSource(s3, 's3://bucket-x/lib');
    try {
      const [entry] = await source.list();
      await expect(source.hash(entry as never, () => {})).rejects.toThrow(/more than the 5 bytes listed/);
      expect(sent).toBeLessThan(1024 ** 2);
    } finally {
      await source.close();
    }
  });

  it('an object whose body ends short of its listed size leaves nothing in the spool', async () => {
    const { readdir } = await import('node:fs/promises');
    const { Readable } = await import('node:stream');
    const { ListObjectsV2Command, S3Client } = await import('@aws-sdk/client-s3');
    const { bucketSource } = await import('../../../cli/sync-source.ts');
    // A store that lists 20 objects of 1 MiB and sends half of each, then ends cleanly (a proxy cutting
    // bodies, an object replaced in between on a store that ignores If-Match).
    const keys = Array.from({ length: 20 }, (_, i) => `lib/${i}.jpg`);
    const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    s3.send = (async (command: unknown) =>
      command instanceof ListObjectsV2Command
        ? { Contents: keys.map((Key) => ({ Key, Size: 1024 ** 2, ETag: '"e"' })), IsTruncated: false }
        : { Body: Readable.from([Buffer.alloc(512 * 1024, 1)]), ContentType: 'image/jpeg' }) as never;
    const spoolParent = await mkdtemp(join(tmpdir(), 'sync-spool-'));
    const before = process.env.TMPDIR;
    process.env.TMPDIR = spoolParent;
    const source = bucketSource(s3, 's3://bucket-x/lib');
    try {
      for (const entry of await source.list()) {
        await expect(source.hash(entry as never, () => {})).rejects.toThrow(/changed while it was read/);
        await source.release(entry as never);
      }
      const [spool] = await readdir(spoolParent);
      // Before: every cut-off object's bytes stayed there until the run ended (20 files, 10 MiB).
      expect(spool === undefined ? [] : await readdir(join(spoolParent, spool))).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      await source.close();
      await rm(spoolParent, { recursive: true, force: true });
    }
  });
});
