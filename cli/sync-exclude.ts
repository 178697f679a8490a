/**
 * `sync --exclude <pattern>`: which of the source's entries a run leaves out, as rsync and rclone
 * filter. Globs are picomatch's (a glob engine is not ours to write: `**`, classes, braces and
 * escapes have many corners), matched against the entry's path under the source's root
 * ('/'-separated, dotfiles included):
 *
 * - a pattern without a slash matches a name in any folder: `*.tmp`, `.DS_Store`;
 * - a pattern with one is anchored at the root: `cache/**`, `/thumbs/*.jpg` (a leading `/` anchors
 *   a pattern that has no other slash: `/notes.txt` is the root's file alone);
 * - a trailing `/` means everything under that folder: `cache/` in any folder, `/cache/` at the root.
 */
import picomatch from 'picomatch';

export function excludeMatcher(patterns: readonly string[]): (rel: string) => boolean {
  // A leading `!` is a name's first character, not picomatch's negation: `--exclude '!x'` leaving
  // out everything but `x` would be a surprise no filter of rsync or rclone makes.
  const options = { dot: true, nonegate: true };
  const tests = patterns.map((raw) => {
    const underFolder = raw.endsWith('/');
    const body = underFolder ? raw.slice(0, -1) : raw;
    const anchored = body.includes('/');
    const pattern = body.replace(/^\/+/, '');
    if (underFolder) return picomatch(anchored ? `${pattern}/**` : `**/${pattern}/**`, options);
    return picomatch(pattern, { ...options, basename: !anchored });
  });
  return (rel) => tests.some((test) => test(rel));
}
