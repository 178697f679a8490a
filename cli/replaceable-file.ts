/**
 * Where a command may write a file by renaming a finished temp file over it: the path itself when
 * nothing is there; the file a symlink points to (as `cp` writes through one, and the link stays);
 * never a device, a FIFO or a socket, which a rename would replace by a file (as root, /dev/null),
 * and never a symlink to nothing, which the rename would replace by a file (`cp` refuses one too).
 */
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import { UsageError } from './errors.ts';

export async function replaceableFile(path: string, what: string): Promise<string> {
  const info = await stat(path).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT' && error.code !== 'ELOOP') throw error;
    const link = await lstat(path).catch(() => undefined);
    if (link?.isSymbolicLink()) {
      const to = await readlink(path).catch(() => '?');
      const why = error.code === 'ELOOP' ? 'that leads back to itself' : 'which does not exist';
      throw new UsageError(
        `${what} ${path} is a symbolic link to ${to}, ${why}: name another file, or create the file it points to`,
      );
    }
    if (error.code === 'ELOOP') throw error;
    return undefined;
  });
  if (info === undefined) return path;
  if (!info.isFile()) {
    throw new UsageError(
      `${what} ${path} is not a regular file (a device, a FIFO, a socket or a folder): name a file to write`,
    );
  }
  return realpath(path);
}
