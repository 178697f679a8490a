/**
 * Where a path leads on this machine: the real path (symbolic links resolved) of its longest part
 * that exists, with the rest, not made yet, after it. Two names of one folder (a link and its
 * target) then compare equal, as a rule about what lies inside a folder needs.
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function realPathSoFar(path: string): Promise<string> {
  const rest: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    try {
      return join(await realpath(at), ...rest);
    } catch {
      if (dirname(at) === at) return path;
      rest.unshift(basename(at));
    }
  }
}
