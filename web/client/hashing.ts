/**
 * SHA-256 of a Blob range, streamed in chunks (memory is one or two chunks whatever
 * the size): in a Web Worker when one is available, so the page stays responsive,
 * else on the calling thread (Node, tests, or `workerUrl: null`).
 */
import { DEFAULT_CHUNK_BYTES, digestChunks } from '../../common/sha256.ts';
import { wasmSha256 } from '../../common/sha256-wasm.ts';

export { DEFAULT_CHUNK_BYTES };

/**
 * Ranges up to this size are read whole and hashed by the platform (WebCrypto, native
 * and several times faster than WASM); larger ones are streamed through hash-wasm.
 * Multipart parts (8 MiB by default) take the fast path; memory stays bounded by it.
 */
export const DEFAULT_NATIVE_MAX_BYTES = 16 * 1024 * 1024;

export interface HashJob {
  readonly blob: Blob;
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
  readonly chunkBytes?: number;
  /** Largest range hashed in one WebCrypto call; 0 always streams. @default 16 MiB */
  readonly nativeMaxBytes?: number;
}

const toHex = (buffer: ArrayBuffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * The bytes of a Blob, in chunks of at most `chunkBytes`, through two buffers that take
 * turns: the next read is under way while the caller hashes the current chunk.
 * `Blob.stream()` reads several times faster than `slice().arrayBuffer()` in Chromium;
 * a "bring your own buffer" reader keeps memory to the two buffers where available.
 */
async function* chunksOf(blob: Blob, chunkBytes: number): AsyncGenerator<Uint8Array> {
  const stream = blob.stream();
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = stream.getReader({ mode: 'byob' });
  } catch {
    byob = undefined;
  }
  if (byob === undefined) {
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        for (let at = 0; at < value.length; at += chunkBytes) yield value.subarray(at, at + chunkBytes);
      }
    } finally {
      reader.releaseLock();
    }
  }
  yield* byobChunks(byob, chunkBytes);
}

async function* byobChunks(reader: ReadableStreamBYOBReader, chunkBytes: number): AsyncGenerator<Uint8Array> {
  try {
    let spare = new ArrayBuffer(chunkBytes);
    let pending = reader.read(new Uint8Array(chunkBytes));
    for (;;) {
      const { done, value } = await pending;
      if (done || value === undefined) return;
      pending = reader.read(new Uint8Array(spare));
      yield value;
      // The caller is done with `value`: its buffer is the next spare.
      spare = value.buffer as ArrayBuffer;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/**
 * Hashes `blob[start, end)` (hex SHA-256). `onBytes` gets the bytes hashed so far (of
 * this range). A range shorter than expected (the file changed) is an error.
 */
export async function hashRange(job: HashJob, onBytes?: (bytes: number) => void): Promise<string> {
  const length = job.end - job.start;
  const slice = job.blob.slice(job.start, job.end);
  const subtle = globalThis.crypto?.subtle;
  if (subtle !== undefined && length <= (job.nativeMaxBytes ?? DEFAULT_NATIVE_MAX_BYTES)) {
    const bytes = await slice.arrayBuffer();
    if (bytes.byteLength !== length)
      throw new Error(`read ${bytes.byteLength} bytes of ${length}: the file changed`);
    const hex = toHex(await subtle.digest('SHA-256', bytes));
    onBytes?.(length);
    return hex;
  }
  const chunks = chunksOf(slice, Math.max(64 * 1024, job.chunkBytes ?? DEFAULT_CHUNK_BYTES));
  const digest = await digestChunks(chunks, wasmSha256, { onBytes });
  if (digest.size !== length) throw new Error(`read ${digest.size} bytes of ${length}: the file changed`);
  return digest.sha256;
}

export interface Hasher {
  hash(job: HashJob, onBytes?: (bytes: number) => void): Promise<string>;
  /** Stops the worker; jobs still running are rejected. */
  close(): void;
}

/** `hash-worker.js` next to this module (the layout `web/build.ts` emits), where workers exist. */
export function defaultWorkerUrl(): URL | null {
  if (typeof Worker === 'undefined') return null;
  try {
    return new URL('./hash-worker.js', import.meta.url);
  } catch {
    return null;
  }
}

/** Hashes on the calling thread. */
export function inlineHasher(): Hasher {
  return { hash: hashRange, close: () => undefined };
}

/** Messages between the page and the hash worker. */
export type WorkerRequest = { readonly id: number } & HashJob;
export type WorkerReply =
  | { readonly id: number; readonly type: 'progress'; readonly bytes: number }
  | { readonly id: number; readonly type: 'done'; readonly sha256: string }
  | { readonly id: number; readonly type: 'error'; readonly message: string };

interface Pending {
  resolve(hex: string): void;
  reject(error: Error): void;
  onBytes: ((bytes: number) => void) | undefined;
}

/**
 * Hashes in a dedicated worker (`hash-worker.js`). Blobs are passed by reference
 * (structured clone of a Blob copies no bytes); the worker reads them itself.
 */
export function workerHasher(url: string | URL): Hasher {
  const worker = new Worker(url, { name: 'media-mirror-hash' });
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let failed: Error | undefined;

  const failAll = (error: Error) => {
    failed = error;
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  worker.addEventListener('message', (event: MessageEvent<WorkerReply>) => {
    const reply = event.data;
    const p = pending.get(reply.id);
    if (!p) return;
    if (reply.type === 'progress') p.onBytes?.(reply.bytes);
    else {
      pending.delete(reply.id);
      if (reply.type === 'done') p.resolve(reply.sha256);
      else p.reject(new Error(reply.message));
    }
  });
  worker.addEventListener('error', (event: ErrorEvent) => {
    event.preventDefault();
    failAll(
      new Error(
        `the hash worker (${String(url)}) failed: ${event.message || 'it could not be loaded'}; ` +
          'pass workerUrl to point at hash-worker.js, or workerUrl: null to hash on the page',
      ),
    );
  });

  return {
    hash(job, onBytes) {
      if (failed) return Promise.reject(failed);
      const id = nextId++;
      return new Promise<string>((resolve, reject) => {
        pending.set(id, { resolve, reject, onBytes });
        const request: WorkerRequest = {
          id,
          blob: job.blob,
          start: job.start,
          end: job.end,
          chunkBytes: job.chunkBytes ?? DEFAULT_CHUNK_BYTES,
          ...(job.nativeMaxBytes === undefined ? {} : { nativeMaxBytes: job.nativeMaxBytes }),
        };
        worker.postMessage(request);
      });
    },
    close() {
      worker.terminate();
      failAll(new Error('the hasher was closed'));
    },
  };
}
