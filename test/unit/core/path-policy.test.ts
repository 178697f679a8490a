import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkMirrorPath } from '../../../agent/safe-path.js';
import { ancestorsOf, type PathOccupancy, PathPolicy, PathRuleError } from '../../../contracts/paths.ts';
import { ValidationError } from '../../../functions/core/errors.js';
import { PathPolicy as DomainPathPolicy } from '../../../functions/core/paths.js';

const targets = [
  { id: 'eu', kind: 's3' as const, keyPrefix: 'mirror/' },
  { id: 'dc1', kind: 'pull' as const, pathPrefix: 'media/' },
];
const policy = new PathPolicy(targets);

function rule(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof PathRuleError) return `${error.code}: ${error.message}`;
    throw error;
  }
  return 'accepted';
}

/** The ledger's answers for the folder rule, from a set of live files. */
function occupancy(live: string[]): PathOccupancy {
  return {
    liveFilesAmong: async (paths) => paths.filter((p) => live.includes(p)),
    hasLiveFileUnder: async (folder) => live.some((p) => p.startsWith(`${folder}/`)),
  };
}

describe('the path policy', () => {
  it('applies the file-system rules only where a pull target takes the path', () => {
    const long = 'x'.repeat(256);
    expect(rule(() => policy.check(`media/${long}`))).toMatch(/255 bytes/);
    expect(rule(() => policy.check(`other/${long}`))).toBe('accepted');
    expect(rule(() => policy.check('media/.a.mirror-tmp-1'))).toMatch(/temp-file/);
    expect(rule(() => policy.check('other/.a.mirror-tmp-1'))).toBe('accepted');
  });

  it("counts every S3 target's key prefix in the 1024-byte key limit", () => {
    expect(rule(() => policy.check(`a/${'b'.repeat(1024 - 'mirror/'.length - 2)}`))).toBe('accepted');
    expect(rule(() => policy.check(`a/${'b'.repeat(1024 - 'mirror/'.length - 1)}`))).toMatch(/at most 1017/);
  });

  it('refuses what a queue cannot carry, and the API alone refuses names its URLs reserve', () => {
    expect(rule(() => policy.check('a/\uFFFF'))).toMatch(
      /noncharacters \(U\+FDD0 to U\+FDEF, U\+FFFE, U\+FFFF/,
    );
    expect(rule(() => policy.check('a/versions'))).toBe('accepted');
    expect(rule(() => policy.admit('a/versions'))).toMatch(/sub-resource/);
    expect(rule(() => policy.admit('versions'))).toBe('accepted'); // top level: no folder to confuse it with
  });

  it('the folder rule: a file where live files need a folder, or under a live file, is a path_conflict', async () => {
    const ledger = occupancy(['media/a', 'media/x/y.jpg']);
    await expect(policy.checkOccupancy('media/a/b.jpg', ledger)).rejects.toMatchObject({
      code: 'path_conflict',
    });
    await expect(policy.checkOccupancy('media/x', ledger)).rejects.toMatchObject({ code: 'path_conflict' });
    await expect(policy.checkOccupancy('media/x/z.jpg', ledger)).resolves.toEqual([]);
    // No pull target takes other/: S3 holds `a` and `a/b` side by side.
    await expect(policy.checkOccupancy('other/a/b', occupancy(['other/a']))).resolves.toEqual([]);
    // `media` itself is not under the pull target's prefix `media/`: a file named media does not clash.
    await expect(policy.checkOccupancy('media/q.jpg', occupancy(['media']))).resolves.toEqual([]);
  });

  it('the folder rule with deferFolders: those folders are returned for the commit to check, not read', async () => {
    const ledger = occupancy(['media/a']);
    await expect(policy.checkOccupancy('media/a/b/c.jpg', ledger, { deferFolders: 5 })).resolves.toEqual([
      'media/a',
      'media/a/b',
    ]);
    // Past the limit, the rest are read as before.
    await expect(policy.checkOccupancy('media/b/a/c.jpg', ledger, { deferFolders: 1 })).resolves.toEqual([
      'media/b',
    ]);
    await expect(
      policy.checkOccupancy('media/a/b/c.jpg', occupancy(['media/a/b']), { deferFolders: 1 }),
    ).rejects.toMatchObject({ code: 'path_conflict' });
    await expect(
      policy.checkOccupancy('media/a/c.jpg', occupancy(['media/a/c.jpg/d']), { deferFolders: 5 }),
    ).rejects.toMatchObject({
      code: 'path_conflict',
    });
  });

  it('ancestorsOf lists the folders outermost first', () => {
    expect(ancestorsOf('a/b/c.jpg')).toEqual(['a', 'a/b']);
    expect(ancestorsOf('c.jpg')).toEqual([]);
  });

  it('one policy: whatever the API admits for a pull target, the agent accepts too (property)', () => {
    const everything = new PathPolicy([{ id: 'dc1', kind: 'pull' }]);
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (raw) => {
        let admitted: string;
        try {
          admitted = everything.admit(raw);
        } catch {
          return;
        }
        expect(checkMirrorPath(admitted).path).toBe(admitted);
      }),
      { numRuns: 300 },
    );
  });

  it('the domain raises a broken rule as ValidationError on field "path" with the same code and message', async () => {
    const domain = new DomainPathPolicy(targets);
    const refusal = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    for (const error of [refusal(() => domain.check('a//b')), refusal(() => domain.admit('a/versions'))]) {
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ field: 'path', code: 'invalid_path', status: 400 });
    }
    expect((refusal(() => domain.check('a//b')) as Error).message).toBe(
      (refusal(() => policy.check('a//b')) as Error).message,
    );
    await expect(domain.checkOccupancy('media/a/b.jpg', occupancy(['media/a']))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'path',
      code: 'path_conflict',
      status: 400,
    });
  });
});
