import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestChunks, Sha256Digest } from '../../../common/sha256.ts';
import {
  createSha256,
  FILE_CHUNK_BYTES,
  hashChunks,
  hashFile,
  nodeSha256,
} from '../../../common/sha256-node.ts';
import { wasmSha256 } from '../../../common/sha256-wasm.ts';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-common-sha-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('digestChunks', () => {
  it('property: both engines give the one-shot digest however the bytes are split', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 5_000 }), { maxLength: 30 }), async (parts) => {
        const whole = Buffer.concat(parts);
        const expected = { sha256: sha256(whole), size: whole.length };
        expect(await digestChunks(parts, nodeSha256)).toEqual(expected);
        expect(await digestChunks(parts, wasmSha256)).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });

  it('reports the bytes hashed so far after each chunk', async () => {
    const progress: number[] = [];
    const digest = await hashChunks([new Uint8Array(3), new Uint8Array(0), new Uint8Array(5)], {
      onBytes: (n) => progress.push(n),
    });
    expect(progress).toEqual([3, 3, 8]);
    expect(digest.size).toBe(8);
  });

  it('an aborted signal stops it with the signal reason, before or between chunks', async () => {
    const before = new AbortController();
    before.abort(new Error('stop'));
    await expect(hashChunks([new Uint8Array(1)], { signal: before.signal })).rejects.toThrow('stop');

    const between = new AbortController();
    let pulled = 0;
    async function* chunks() {
      pulled++;
      yield new Uint8Array(1);
      between.abort(new Error('stopped between'));
      pulled++;
      yield new Uint8Array(1);
    }
    await expect(hashChunks(chunks(), { signal: between.signal })).rejects.toThrow('stopped between');
    expect(pulled).toBe(2);
  });
});

describe('Sha256Digest (incremental)', () => {
  it('hashes what it was fed, and counts it', () => {
    const data = randomBytes(10_000);
    const hash = createSha256();
    expect(hash.update(data.subarray(0, 1234)).size).toBe(1234);
    hash.update(data.subarray(1234));
    expect(hash.digest()).toEqual({ sha256: sha256(data), size: data.length });
  });

  it('on the WASM engine too; nothing fed is the empty digest', async () => {
    expect(new Sha256Digest(await wasmSha256()).digest()).toEqual({ sha256: EMPTY, size: 0 });
    expect(new Sha256Digest(await wasmSha256()).update(Buffer.from('abc')).digest().sha256).toBe(
      sha256(Buffer.from('abc')),
    );
  });
});

describe('hashFile', () => {
  it('matches a one-shot hash over several chunks, progress rising to the size', async () => {
    const data = randomBytes(2 * FILE_CHUNK_BYTES + 12_345);
    const file = join(dir, 'big.bin');
    await writeFile(file, data);
    const progress: number[] = [];
    expect(await hashFile(file, { onBytes: (n) => progress.push(n) })).toEqual({
      sha256: sha256(data),
      size: data.length,
    });
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.at(-1)).toBe(data.length);
  });

  it('property: any chunk size gives the same digest', async () => {
    const file = join(dir, 'prop.bin');
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 100_000 }),
        fc.integer({ min: 1, max: 40_000 }),
        async (bytes, chunkBytes) => {
          await writeFile(file, bytes);
          expect(await hashFile(file, { chunkBytes })).toEqual({ sha256: sha256(bytes), size: bytes.length });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('follows a symlink unless noFollow, and passes the file system error through', async () => {
    const file = join(dir, 'target.bin');
    const link = join(dir, 'link.bin');
    await writeFile(file, 'abc');
    await symlink(file, link);
    expect((await hashFile(link)).sha256).toBe(sha256(Buffer.from('abc')));
    await expect(hashFile(link, { noFollow: true })).rejects.toMatchObject({ code: 'ELOOP' });
    await expect(hashFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(hashFile(dir)).rejects.toMatchObject({ code: 'EISDIR' });
  });

  it('an empty file is the empty digest; a bad chunk size is refused before the file is opened', async () => {
    const file = join(dir, 'empty.bin');
    await writeFile(file, '');
    expect(await hashFile(file)).toEqual({ sha256: EMPTY, size: 0 });
    await expect(hashFile(join(dir, 'missing'), { chunkBytes: 0 })).rejects.toThrow(RangeError);
    await expect(hashFile(file, { chunkBytes: 1.5 })).rejects.toThrow(/chunkBytes/);
  });

  it('an abort stops it between chunks with the signal reason, and the file is closed', async () => {
    const file = join(dir, 'abort.bin');
    await writeFile(file, randomBytes(64 * 1024));
    const controller = new AbortController();
    const reason = new Error('stop');
    const seen: number[] = [];
    const hashing = hashFile(file, {
      chunkBytes: 4096,
      signal: controller.signal,
      onBytes: (n) => {
        seen.push(n);
        if (n >= 8192) controller.abort(reason);
      },
    });
    await expect(hashing).rejects.toBe(reason);
    expect(seen).toEqual([4096, 8192]);
    await expect(hashFile(file, { signal: controller.signal })).rejects.toBe(reason);
    // Closed: the file can be removed and the next hash of a fresh file works.
    await rm(file);
    await writeFile(file, 'abc');
    expect((await hashFile(file)).sha256).toBe(sha256(Buffer.from('abc')));
  });
});
