/**
 * Where a command may write a file by renaming a finished temp file over it: the path itself when
 * nothing is there; the file a symlink points to (as `cp` writes through one, and the link stays);
 * never a device, a FIFO or a socket, which a rename would replace by a file (as root, /dev/null).
 */
import { realpath, stat } from 'node:fs/promises';
import { UsageError } from './errors.ts';

export async function replaceableFile(path: string, what: string): Promise<string> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (info === undefined) return path;
  if (!info.isFile()) {
    throw new UsageError(
      `${what} ${path} is not a regular file (a device, a FIFO, a socket or a folder): name a file to write`,
    );
  }
  return realpath(path);
}
