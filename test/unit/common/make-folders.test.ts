import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeFolders } from '../../../common/make-folders.ts';

describe("makeFolders (mkdir -p without Node's recursive mkdir)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'make-folders-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes the missing folders with the mode asked, and leaves one that exists', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    await makeFolders(deep, 0o700);
    expect((await stat(deep)).isDirectory()).toBe(true);
    expect((await stat(join(dir, 'a'))).mode & 0o777).toBe(0o700);
    await makeFolders(deep, 0o700);
    await makeFolders(dir);
  });

  it('many at once on the same folders all succeed', async () => {
    const paths = Array.from({ length: 8 }, (_, i) => join(dir, 'x', 'y', `z${i % 2}`));
    await Promise.all(paths.map((p) => makeFolders(p)));
    for (const p of paths) expect((await stat(p)).isDirectory()).toBe(true);
  });

  it('a file at the path or on its way is ENOTDIR; a dangling symlink there is EEXIST', async () => {
    await writeFile(join(dir, 'f'), 'x');
    await expect(makeFolders(join(dir, 'f'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(makeFolders(join(dir, 'f', 'g'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await symlink(join(dir, 'nowhere'), join(dir, 'dangling'));
    await expect(makeFolders(join(dir, 'dangling'))).rejects.toMatchObject({ code: 'EEXIST' });
    await mkdir(join(dir, 'real'));
    await symlink(join(dir, 'real'), join(dir, 'link'));
    await makeFolders(join(dir, 'link', 'inside'));
    expect((await stat(join(dir, 'real', 'inside'))).isDirectory()).toBe(true);
  });

  it('a folder the file system will not make (/proc) fails at once with its error', async () => {
    await expect(makeFolders('/proc/self/no-such/x')).rejects.toMatchObject({ code: 'ENOENT' });
  }, 5_000);
});
