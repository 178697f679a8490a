/**
 * node:crypto (OpenSSL) as the engine of the one streaming SHA-256, and a file hasher on
 * top of it. Server-side only: the browser uses `sha256-wasm.ts`.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type Digest, type DigestOptions, digestChunks, Sha256Digest, type Sha256Engine } from './sha256.ts';

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

/** File reads: two buffers of this size, one being filled while the other is hashed. */
export const FILE_CHUNK_BYTES = 8 * 1024 * 1024;

export interface HashFileOptions extends DigestOptions {
  /** Read size (and each of the two buffers' size; never larger than the file). @default 8 MiB */
  readonly chunkBytes?: number | undefined;
  /** Refuse (ELOOP) to read through a symlink at the file's own name. @default false */
  readonly noFollow?: boolean | undefined;
  /** Runs on the opened file before any byte is read; what it throws ends the hash. */
  readonly opened?: ((handle: FileHandle) => Promise<void>) | undefined;
}

/**
 * SHA-256 and size of a local file, streamed through two reused buffers: the next read is
 * in flight (on libuv's thread pool) while the main thread hashes the current buffer, so
 * the disk and OpenSSL work at once and no chunk is allocated per read (a read stream
 * allocates each chunk anew). `npm run bench` compares it with `openssl dgst` (docs/scale.md).
 * Errors are the file system's own (ENOENT, EACCES, ELOOP, EISDIR...).
 */
export async function hashFile(file: string, options: HashFileOptions = {}): Promise<Digest> {
  const chunkBytes = options.chunkBytes ?? FILE_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw new RangeError(`chunkBytes must be a positive whole number, got ${chunkBytes}`);
  }
  options.signal?.throwIfAborted();
  const flags = options.noFollow ? constants.O_RDONLY | constants.O_NOFOLLOW : constants.O_RDONLY;
  const handle = await open(file, flags);
  try {
    await options.opened?.(handle);
    // Small files get small buffers; a file that grows while read is still read to its end.
    const size = (await handle.stat()).size;
    return await hashHandle(handle, Math.max(1, Math.min(chunkBytes, size)), options);
  } finally {
    await handle.close();
  }
}

async function hashHandle(handle: FileHandle, bufferBytes: number, options: DigestOptions): Promise<Digest> {
  const { onBytes, signal } = options;
  const buffers: readonly Buffer[] = [Buffer.allocUnsafe(bufferBytes), Buffer.allocUnsafe(bufferBytes)];
  const hash = createSha256();
  let turn = 0;
  let pending = handle.read(buffers[0] as Buffer, 0, bufferBytes, 0);
  try {
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) return hash.digest();
      turn = 1 - turn;
      pending = handle.read(buffers[turn] as Buffer, 0, bufferBytes, hash.size + bytesRead);
      signal?.throwIfAborted();
      hash.update(buffer.subarray(0, bytesRead));
      onBytes?.(hash.size);
    }
  } finally {
    // The handle closes after this: let a read still in flight end first.
    await pending.catch(() => undefined);
  }
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

function toBytes(data: SourceData): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/**
 * SHA-256 / HMAC-SHA-256 on node:crypto in the shape `SignatureV4` takes as `sha256` (what
 * `@smithy/hash-node` does for the SDK's Node clients): the local stack's SigV4 verifier and the
 * CLI's signer for an API behind IAM share it.
 */
export class SigningSha256 {
  readonly #secret: Uint8Array | undefined;
  #hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#secret = secret === undefined ? undefined : toBytes(secret);
    this.#hash = this.#fresh();
  }
  #fresh(): Hash | Hmac {
    return this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
  update(data: SourceData): void {
    this.#hash.update(toBytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
  reset(): void {
    this.#hash = this.#fresh();
  }
}
