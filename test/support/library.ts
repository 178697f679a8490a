/**
 * The photo library that `sync` imports in the tests and in the bench (bench/sync.ts): files of
 * 1 byte to ~12 KiB in 40 album folders, alternately .jpg and .png, content chosen per file so
 * that some files repeat another's content.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Content of file `n`: 1 byte to ~12 KiB. */
export const libraryContent = (n: number): string => `photo ${n}\n`.repeat(1 + ((n * 37) % 1000));

/** Where file `i` lives in the library: `album-<i mod 40>/img-<i>.<jpg|png>`. */
export function libraryPath(i: number): string {
  const folder = `album-${String(i % 40).padStart(2, '0')}`;
  return `${folder}/img-${String(i).padStart(4, '0')}.${i % 2 === 0 ? 'jpg' : 'png'}`;
}

/**
 * Until files written now are old enough for sync's hash cache to keep their digests: it does not
 * for a file changed in the last 3 s (cli/sync-source.ts, RECENT_CHANGE_MS), whose stamp a rewrite
 * in the same tick of a coarse file system clock would not change. A test or a bench that expects
 * a later run to hash nothing waits this long after writing, before the run that hashes.
 */
export const untilCacheable = () => new Promise((resolve) => setTimeout(resolve, 3_100));

/**
 * Writes files `from` to `to - 1` under `dir`; `source(i)` picks whose content file i gets.
 * Calls `onFile` with each file's path in the library and its content; returns the bytes written.
 */
export async function writeLibrary(
  dir: string,
  from: number,
  to: number,
  source: (i: number) => number,
  onFile: (path: string, content: string) => void = () => {},
): Promise<number> {
  let bytes = 0;
  for (let i = from; i < to; i++) {
    const path = libraryPath(i);
    const content = libraryContent(source(i));
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
    onFile(path, content);
    bytes += content.length;
  }
  return bytes;
}

/** The first import's library: every 10th file repeats the content of the file five before it. */
export const withDuplicates =
  (every: number) =>
  (i: number): number =>
    i % every === every - 1 ? i - 5 : i;

/** Writes `files` (path under the folder → content) under `dir`, folders made as needed; returns `dir`. */
export async function writeFiles(dir: string, files: Record<string, string | Buffer>): Promise<string> {
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), content);
  }
  return dir;
}
