import { lstat, mkdir, mkdtemp, readdir, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MirrorFolderMovedError, RefusedError } from '../../../agent/errors.ts';
import { checkMirrorPath, isTempName, SafePaths, tempNameFor } from '../../../agent/safe-path.ts';

let base: string;
let root: string;
let outside: string;
let paths: SafePaths;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-safe-path-'));
  root = join(base, 'mirror');
  outside = join(base, 'outside');
  await mkdir(join(root, 'a', 'b'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(root, 'file'), 'x');
  await symlink(outside, join(root, 'out')); // absolute link out
  await symlink('../outside', join(root, 'rel-out')); // relative link out
  await symlink(join(root, 'a'), join(root, 'in')); // link to a folder inside
  await symlink('../..', join(root, 'a', 'up')); // inside, then out by a relative hop
  await symlink('b', join(root, 'a', 'to-b')); // relative, inside
  await symlink(join(root, 'file'), join(root, 'to-file')); // link to a file, used as a folder
  await symlink(join(root, 'nowhere'), join(root, 'dangling'));
  await symlink('loop2', join(root, 'loop1'));
  await symlink('loop1', join(root, 'loop2'));
  paths = await SafePaths.open(root);
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function refusal(raw: unknown): Promise<string> {
  try {
    await paths.resolve(raw, { create: true });
  } catch (error) {
    if (error instanceof RefusedError) return error.code;
    throw error;
  }
  return 'accepted';
}

describe('safe paths', () => {
  it('accepts ordinary paths and resolves them under the folder', async () => {
    const r = await paths.resolve('a/b/c.jpg', { create: true });
    expect(r?.file).toBe(join(paths.root, 'a', 'b', 'c.jpg'));
    expect(r?.parent).toBe(join(paths.root, 'a', 'b'));
  });

  it.each([
    ['../x', 'unsafe-path'],
    ['a/../../x', 'unsafe-path'],
    ['/etc/passwd', 'unsafe-path'],
    ['a//b', 'unsafe-path'],
    ['./a', 'unsafe-path'],
    ['a\\..\\b', 'unsafe-path'],
    ['a/\u0000b', 'unsafe-path'],
    ['', 'unsafe-path'],
    [42, 'unsafe-path'],
    ['.media-mirror/state.snapshot', 'unsafe-path'],
    ['a/.x.mirror-tmp-123abc', 'unsafe-path'],
    [`${'n'.repeat(256)}/x`, 'unsafe-path'],
    ['out/x', 'unsafe-path'],
    // A symlink inside the folder too: two paths would name one file (a delete of one removes the
    // other), and one into .media-mirror would let a path rewrite the agent's state.
    ['in/b/via-link.jpg', 'unsafe-path'],
    ['a/to-b/x', 'unsafe-path'],
    ['rel-out/x', 'unsafe-path'],
    ['a/up/outside/x', 'unsafe-path'],
    ['dangling/x', 'unsafe-path'],
    ['loop1/x', 'unsafe-path'],
    ['file/x', 'path-conflict'],
    ['to-file/x', 'unsafe-path'],
  ])('refuses %j (%s)', async (raw, code) => {
    expect(await refusal(raw)).toBe(code);
  });

  it('refuses before creating anything outside the folder', async () => {
    expect(await readdir(outside)).toEqual([]);
  });

  it('without create, a missing folder is "nothing there", not an error', async () => {
    expect(await paths.resolve('no/such/folder/x', { create: false })).toBeUndefined();
    // So is a file where a folder would be (a delete finds nothing under it); a symlink stays refused.
    expect(await paths.resolve('file/x', { create: false })).toBeUndefined();
    await expect(paths.resolve('to-file/x', { create: false })).rejects.toThrow(/symlink/);
    await expect(lstat(join(root, 'no'))).rejects.toThrow();
  });

  it('normalises to NFC, so one name has one file', () => {
    expect(checkMirrorPath('e\u0301.txt').path).toBe('\u00e9.txt');
  });

  it('temp names are recognised and fit a file name', () => {
    const long = 'x'.repeat(250);
    const temp = tempNameFor(long, 'abcdef012345');
    expect(Buffer.byteLength(temp)).toBeLessThanOrEqual(255);
    expect(isTempName(temp)).toBe(true);
    expect(isTempName('photo.jpg')).toBe(false);
  });

  it('property: any accepted path resolves to a file whose real folder is inside the mirror folder', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        '..',
        '.',
        '',
        'a',
        'b',
        'in',
        'out',
        'rel-out',
        'up',
        'to-b',
        'file',
        'to-file',
        'dangling',
      ),
      fc.constantFrom('.media-mirror', '.x.mirror-tmp-1', 'é', 'e\u0301', '日本', 'sp ace', '100%', 'a+b'),
      fc.string({ minLength: 1, maxLength: 6 }),
    );
    const rawPath = fc.oneof(
      fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => s.join('/')),
      fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`),
      fc.string({ maxLength: 20 }),
    );
    const realRoot = await realpath(root);
    await fc.assert(
      fc.asyncProperty(rawPath, async (raw) => {
        const resolved = await resolveUnlessRefused(paths, raw);
        if (resolved === 'refused') return;
        if (!resolved) throw new Error('create: true never gives undefined');
        const parentReal = await realpath(resolved.parent);
        expect(parentReal === realRoot || parentReal.startsWith(`${realRoot}${sep}`)).toBe(true);
        expect(dirname(resolved.file)).toBe(resolved.parent);
        expect(resolved.name.includes('/')).toBe(false);
        expect(resolved.name === '..' || resolved.name === '.').toBe(false);
      }),
      { numRuns: 400 },
    );
    // And nothing was ever created outside.
    expect(await readdir(outside)).toEqual([]);
  });
});

/** Resolves with create; 'refused' when the path is refused, by the agent or by the file system. */
async function resolveUnlessRefused(
  paths: SafePaths,
  raw: string,
): Promise<Awaited<ReturnType<SafePaths['resolve']>> | 'refused'> {
  try {
    return await paths.resolve(raw, { create: true });
  } catch (error) {
    if (error instanceof RefusedError) return 'refused';
    // A file name that the file system itself refuses (ENAMETOOLONG etc.) is not an escape.
    if ((error as NodeJS.ErrnoException).code) return 'refused';
    throw error;
  }
}

describe('removing what verify found', () => {
  it('existingParentOf walks real folders only: a symlink on the way is refused, never followed', async () => {
    await mkdir(join(outside, 'victim'), { recursive: true });
    await writeFile(join(outside, 'victim', 'f'), 'keep');
    await expect(paths.existingParentOf('out/victim/f')).rejects.toThrow(/symlink/);
    await expect(paths.existingParentOf('in/b/f')).rejects.toThrow(/symlink/);
    expect(await paths.existingParentOf('a/b/anything\x1b.txt')).toBe(join(paths.root, 'a', 'b'));
    expect(await paths.existingParentOf('top.txt')).toBe(paths.root);
    expect(await paths.existingParentOf('missing/f')).toBeUndefined();
    expect(await paths.existingParentOf('file/f')).toBeUndefined();
    expect(await paths.existingParentOf('../outside/victim/f')).toBeUndefined();
    expect(await readdir(join(outside, 'victim'))).toEqual(['f']);
  });

  it('pruneEmptyFolders removes emptied folders innermost first, stopping at one that holds anything and at the root', async () => {
    const prune = await mkdtemp(join(base, 'prune-'));
    const p = await SafePaths.open(prune);
    await mkdir(join(prune, 'x', 'y', 'z'), { recursive: true });
    await symlink(outside, join(prune, 'x', 'link'));
    await p.pruneEmptyFolders(join(p.root, 'x', 'y', 'z'));
    expect(await readdir(join(prune, 'x'))).toEqual(['link']);
    // rmdir never follows the link to the (empty-looking) folder it points at.
    await mkdir(join(outside, 'empty'));
    await symlink(join(outside, 'empty'), join(prune, 'to-empty'));
    await p.pruneEmptyFolders(join(p.root, 'to-empty'));
    expect((await lstat(join(outside, 'empty'))).isDirectory()).toBe(true);
    await rm(join(prune, 'x'), { recursive: true });
    await rm(join(prune, 'to-empty'));
    await mkdir(join(prune, 'only'));
    await p.pruneEmptyFolders(join(p.root, 'only'));
    expect(await readdir(prune)).toEqual([]);
    expect((await lstat(prune)).isDirectory()).toBe(true);
  });
});

describe('the mirror folder itself', () => {
  it('a walk stops with MirrorFolderMovedError once its path names anything but the folder opened (docs/agent.md)', async () => {
    const dir = join(base, 'moving');
    await mkdir(join(dir, 'sub'), { recursive: true });
    const moving = await SafePaths.open(dir);
    await expect(moving.resolve('sub/f', { create: true })).resolves.toBeDefined();
    const now = async () => {
      const error = await moving.resolve('sub/f', { create: true }).catch((e: unknown) => e);
      const viaVerify = await moving.existingParentOf('sub/f').catch((e: unknown) => e);
      expect(viaVerify).toBeInstanceOf(MirrorFolderMovedError);
      expect(error).toBeInstanceOf(MirrorFolderMovedError);
      return {
        now: (error as MirrorFolderMovedError).now,
        exitCode: (error as MirrorFolderMovedError).exitCode,
      };
    };
    await rename(dir, `${dir}.old`);
    expect(await now()).toEqual({ now: 'gone', exitCode: 73 });
    await symlink(`${dir}.old`, dir); // a link, even to the very folder
    expect((await now()).now).toBe('a symlink');
    await rm(dir);
    await mkdir(join(dir, 'sub'), { recursive: true });
    expect((await now()).now).toBe('another folder');
    await rm(dir, { recursive: true });
    await writeFile(dir, 'x');
    expect((await now()).now).toBe('not a folder');
    // Put back, it is the same folder again: nothing was created anywhere meanwhile.
    await rm(dir);
    await rename(`${dir}.old`, dir);
    await expect(moving.resolve('sub/f', { create: true })).resolves.toBeDefined();
  });
});
