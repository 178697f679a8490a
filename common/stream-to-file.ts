import type { WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';

export interface NewFileOptions {
  /** `wx` (the default) refuses a file already there; `w` replaces it. */
  readonly flags?: 'wx' | 'w';
  readonly mode?: number | undefined;
  readonly highWaterMark?: number;
}

/**
 * Runs `write` (a `pipeline` ending in the stream it is given) into a new file at `path`, and
 * settles only once that file is open before and closed after, whether it worked or not.
 *
 * `fs.createWriteStream(path)` opens its file on a later tick, and `stream.pipeline` rejects on a
 * failed source without waiting for that open: a clean-up (`rm(path)`) run at once raced the
 * open, which could then make the file after it, left behind for good (2000 failed downloads on a
 * busy thread pool left 21 such files; docs/platform.md). Opening the file here first, and
 * waiting for it to close, leaves no such moment.
 */
export async function streamToNewFile(
  path: string,
  options: NewFileOptions,
  write: (out: WriteStream) => Promise<void>,
): Promise<void> {
  const handle = await open(path, options.flags ?? 'wx', options.mode);
  const out = handle.createWriteStream(
    options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark },
  );
  try {
    await write(out);
  } finally {
    // pipeline destroys the stream on failure (closing the handle) and ends it on success; a
    // `write` that threw before piping leaves it open, so it is destroyed here.
    if (!out.destroyed && !out.writableFinished) out.destroy();
    if (!out.closed) await new Promise<void>((closed) => out.once('close', () => closed()));
  }
}
