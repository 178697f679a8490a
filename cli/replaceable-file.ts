/**
 * Where a command may write a file by renaming a finished temp file over it: the path itself when
 * nothing is there; the file a symlink points to (as `cp` writes through one, and the link stays);
 * never a device, a FIFO or a socket, which a rename would replace by a file (as root, /dev/null),
 * and never a symlink to nothing, which the rename would replace by a file (`cp` refuses one too).
 */
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UsageError } from './errors.ts';

export async function replaceableFile(path: string, what: string): Promise<string> {
  await refuseForeignLinks(path, what);
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

/**
 * Each link on the way from `path` to its file must be the user's own, root's or its folder's owner's
 * (as fs.protected_symlinks judges one in a sticky folder, here in any folder). In a folder others write
 * (/tmp, a web root the web server's group writes), a link someone else made at the name `get`
 * writes (`report.pdf -> ~/.ssh/authorized_keys`) had the mirror's bytes renamed over its target:
 * the rename over realpath() is not an open() the kernel would have refused. Without user ids
 * (Windows), every link is followed.
 */
async function refuseForeignLinks(path: string, what: string): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  let at = path;
  // Past 40 links the kernel answers ELOOP, which the stat below reports.
  for (let hop = 0; hop < 40; hop++) {
    const link = await lstat(at).catch(() => undefined);
    if (!link?.isSymbolicLink()) return;
    const to = await readlink(at);
    const folder = await stat(dirname(at)).catch(() => undefined);
    if (link.uid !== uid && link.uid !== 0 && link.uid !== folder?.uid) {
      throw new UsageError(
        `${what} ${path} is a symbolic link to ${to} that another user (uid ${link.uid}) made in a folder it does not own: ` +
          'not followed; remove it, or name another file',
      );
    }
    at = resolve(dirname(at), to);
  }
}
