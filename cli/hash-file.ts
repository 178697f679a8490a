/**
 * Streaming SHA-256 of a file: reads in large chunks, holds one chunk at a time,
 * so memory stays flat whatever the file size (design invariant 7).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { MirrorCliError } from './errors.ts';

export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

export interface FileDigest {
  /** Lower-case hex SHA-256. */
  readonly sha256: string;
  readonly size: number;
}

export interface HashOptions {
  /** Called after each chunk with the bytes hashed so far. */
  onBytes?: ((bytesDone: number) => void) | undefined;
  /** Read size. @default 4 MiB */
  chunkBytes?: number | undefined;
}

/** Hashes any stream of byte chunks. */
export async function hashChunks(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  onBytes?: (bytesDone: number) => void,
): Promise<FileDigest> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of chunks) {
    hash.update(chunk);
    size += chunk.byteLength;
    onBytes?.(size);
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * Hashes a regular file. Fails if the file is not a regular file, or changes size
 * while it is read (the declared size and hash would then not describe one content).
 */
export async function hashFile(file: string, options: HashOptions = {}): Promise<FileDigest> {
  const info = await statRegularFile(file);
  const stream = createReadStream(file, { highWaterMark: options.chunkBytes ?? DEFAULT_CHUNK_BYTES });
  let digest: FileDigest;
  try {
    digest = await hashChunks(stream as AsyncIterable<Buffer>, options.onBytes);
  } catch (err) {
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
