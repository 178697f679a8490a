/**
 * `mkdir -p`: a folder and its missing parents.
 *
 * Not `mkdir(dir, { recursive: true })`: Node's (20 and 24) loops for ever, at full CPU, when a
 * file system answers ENOENT for a new folder whose parent exists (`/proc/<pid>/x`, some FUSE
 * mounts), so an agent or a `sync --cache` given such a path hung instead of failing. Here each
 * missing folder is made once, from the top, and a refusal is the file system's error.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export async function makeFolders(dir: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  for (let at = resolve(dir); ; at = dirname(at)) {
    const info = await stat(at).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (info !== undefined) {
      if (!info.isDirectory()) throw notAFolder(at);
      break;
    }
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const folder of missing) {
    await mkdir(folder, mode === undefined ? {} : { mode }).catch(async (error: NodeJS.ErrnoException) => {
      // Made meanwhile by someone else: fine if it is a folder. A dangling symlink stays EEXIST.
      if (error.code !== 'EEXIST') throw error;
      const info = await stat(folder).catch(() => undefined);
      if (info === undefined) throw error;
      if (!info.isDirectory()) throw notAFolder(folder);
    });
  }
}

/** As `mkdir -p` reports a file on the way. */
function notAFolder(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), {
    code: 'ENOTDIR',
    syscall: 'mkdir',
    path,
  });
}
