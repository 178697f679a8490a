/**
 * Reading a file that says where to send things (the local stack's endpoints file: the API, its
 * token, the emulators and their keys) only when it is the reader's own. It is looked for under the
 * working directory (`.mirror/endpoints.json`), and on a shared machine that may be a folder other
 * users write (/tmp, a web root of the web server's group): a file planted there named its
 * writer's listener, which then received every uploaded file and the token from MIRROR_API_TOKEN.
 */
import { open } from 'node:fs/promises';

/** The file is another user's, or others may write it. */
export class ForeignFileError extends Error {
  override readonly name = 'ForeignFileError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

export interface OwnFileOptions {
  /**
   * Its group may write it: a file of a checkout made under umask 002 (a project file such as
   * mirror.config.json), whose group is the owner's own on most systems. @default false
   */
  readonly groupMayWrite?: boolean;
}

/**
 * Why a file of this owner and mode is not the reader's word, or undefined if it is: its owner must
 * be the reader or root, and neither its group nor others may write it (as ssh judges its config).
 * Without user ids (Windows) every file passes.
 */
export function foreignness(
  info: { readonly uid: number; readonly mode: number },
  uid: number | undefined = process.getuid?.(),
  options: OwnFileOptions = {},
): string | undefined {
  if (uid === undefined) return undefined;
  if (info.uid !== uid && info.uid !== 0) return `it belongs to another user (uid ${info.uid})`;
  if ((info.mode & (options.groupMayWrite ? 0o002 : 0o022)) !== 0)
    return `other users may write it (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')})`;
  return undefined;
}

/**
 * The text of `file`, judged on the file opened, so that one swapped in after a check is not read.
 * A missing or unreadable file throws the file system's error; someone else's, ForeignFileError.
 */
export async function readOwnTextFile(file: string, options: OwnFileOptions = {}): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const problem = foreignness(await handle.stat(), process.getuid?.(), options);
    if (problem !== undefined) throw new ForeignFileError(file, problem);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
