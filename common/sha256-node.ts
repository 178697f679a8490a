/**
 * node:crypto (OpenSSL) as the engine of the one streaming SHA-256, and a file hasher on
 * top of it. Server-side only: the browser uses `sha256-wasm.ts`.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import {
  DEFAULT_CHUNK_BYTES,
  type Digest,
  type DigestOptions,
  digestChunks,
  Sha256Digest,
  type Sha256Engine,
} from './sha256.ts';

export const nodeSha256 = (): Sha256Engine => {
  const hash = createHash('sha256');
  return { update: (chunk) => hash.update(chunk), digestHex: () => hash.digest('hex') };
};

/** A fresh incremental SHA-256 on node:crypto. */
export const createSha256 = (): Sha256Digest => new Sha256Digest(nodeSha256());

/** SHA-256 and size of a stream of byte chunks, on node:crypto. */
export const hashChunks = (
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: DigestOptions = {},
): Promise<Digest> => digestChunks(chunks, nodeSha256, options);

export interface HashFileOptions extends DigestOptions {
  /** Read size. @default 4 MiB */
  readonly chunkBytes?: number | undefined;
  /** Refuse (ELOOP) to read through a symlink at the file's own name. @default false */
  readonly noFollow?: boolean | undefined;
}

/**
 * SHA-256 and size of a local file, streamed (the next read overlaps hashing the current
 * chunk). Errors are the file system's own (ENOENT, EACCES, ELOOP, EISDIR...).
 */
export async function hashFile(file: string, options: HashFileOptions = {}): Promise<Digest> {
  const highWaterMark = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  // The handle's stream closes the handle when it ends or is destroyed.
  const stream = options.noFollow
    ? (await open(file, constants.O_RDONLY | constants.O_NOFOLLOW)).createReadStream({ highWaterMark })
    : createReadStream(file, { highWaterMark });
  try {
    return await hashChunks(stream as AsyncIterable<Buffer>, options);
  } finally {
    stream.destroy();
  }
}
