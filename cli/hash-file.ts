/**
 * SHA-256 of a file for the CLI: the one streaming hasher (common/sha256-node.ts, memory
 * flat whatever the file size), with errors a user can act on and a check that the file
 * did not change size while it was read.
 */
import { type FileHandle, stat } from 'node:fs/promises';
import type { Digest } from '../common/sha256.ts';
import { hashFile as hashFileStream } from '../common/sha256-node.ts';
import { MirrorCliError } from './errors.ts';

export { DEFAULT_CHUNK_BYTES } from '../common/sha256.ts';

export type FileDigest = Digest;

export interface HashOptions {
  /** Called after each chunk with the bytes hashed so far. */
  onBytes?: ((bytesDone: number) => void) | undefined;
  /** Read size. @default 4 MiB */
  chunkBytes?: number | undefined;
  /** Refuse to read through a symlink at the file's own name. @default false */
  noFollow?: boolean | undefined;
  /** Runs on the opened file before any byte is read (common/sha256-node.ts). */
  opened?: ((handle: FileHandle) => Promise<void>) | undefined;
}

/**
 * Hashes a regular file. Fails if the file is not a regular file, or changes size
 * while it is read (the declared size and hash would then not describe one content).
 */
export async function hashFile(file: string, options: HashOptions = {}): Promise<FileDigest> {
  const info = await statRegularFile(file);
  let digest: FileDigest;
  try {
    digest = await hashFileStream(file, options);
  } catch (err) {
    if (err instanceof MirrorCliError) throw err;
    throw new MirrorCliError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (digest.size !== info.size) {
    throw new MirrorCliError(
      `${file} changed while it was hashed (${info.size} bytes before, ${digest.size} read); try again`,
    );
  }
  return digest;
}

/** `stat` with errors a user can act on. */
export async function statRegularFile(file: string): Promise<{ size: number }> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MirrorCliError(`no such file: ${file}`, { cause: err });
    if (code === 'EACCES') throw new MirrorCliError(`permission denied: ${file}`, { cause: err });
    throw new MirrorCliError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!info.isFile()) throw new MirrorCliError(`not a regular file: ${file}`);
  return { size: info.size };
}
