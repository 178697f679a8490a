import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MirrorCliError } from '../../../cli/errors.ts';
import { hashFile } from '../../../cli/hash-file.ts';
import { FILE_CHUNK_BYTES } from '../../../common/sha256-node.ts';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-hash-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('hashFile', () => {
  it('matches crypto.createHash on a few MiB, reporting progress up to the size', async () => {
    const data = randomBytes(2 * FILE_CHUNK_BYTES + 12_345); // more than two read chunks, not a multiple
    const file = join(dir, 'big.bin');
    await writeFile(file, data);
    const progress: number[] = [];
    const digest = await hashFile(file, { onBytes: (n) => progress.push(n) });
    expect(digest).toEqual({ sha256: sha256(data), size: data.length });
    expect(digest.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(data.length);
  });

  it('hashes an empty file', async () => {
    const file = join(dir, 'empty.bin');
    await writeFile(file, '');
    expect(await hashFile(file)).toEqual({
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      size: 0,
    });
  });

  it('property: any bytes, any chunk size, same digest as a one-shot hash', async () => {
    const file = join(dir, 'prop.bin');
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200_000 }),
        fc.integer({ min: 1, max: 70_000 }),
        async (bytes, chunkBytes) => {
          await writeFile(file, bytes);
          const digest = await hashFile(file, { chunkBytes });
          expect(digest).toEqual({ sha256: sha256(bytes), size: bytes.length });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('fails clearly for a missing file and for a directory', async () => {
    await expect(hashFile(join(dir, 'nope.bin'))).rejects.toThrow(/^no such file: .*nope\.bin$/);
    const sub = join(dir, 'sub');
    await mkdir(sub);
    const err = await hashFile(sub).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MirrorCliError);
    expect((err as Error).message).toMatch(/^not a regular file: /);
  });
});
