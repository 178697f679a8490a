/** The hash step: the whole file's SHA-256 (what the claim declares) and each part's, abortable. */
import { ApiError, abortReason } from '../errors.ts';
import { defaultWorkerUrl, type Hasher, inlineHasher, workerHasher } from '../hashing.ts';

export interface HashSettings {
  /** Where `hash-worker.js` is served; `null` hashes on the calling thread. @default next to the bundle */
  readonly workerUrl?: string | URL | null | undefined;
  /** Bytes per read. @default 4 MiB */
  readonly chunkBytes?: number | undefined;
}

export function openHasher(settings: HashSettings): Hasher {
  const workerUrl = settings.workerUrl === undefined ? defaultWorkerUrl() : settings.workerUrl;
  return workerUrl === null ? inlineHasher() : workerHasher(workerUrl);
}

/**
 * The SHA-256 (hex) of a file, streamed in a Web Worker (or on this thread with
 * `workerUrl: null`, or where there are no workers): what `uploadFile` declares.
 */
export async function sha256File(
  file: Blob,
  options: HashSettings & { readonly onBytes?: (bytes: number) => void } = {},
): Promise<string> {
  const hasher = openHasher(options);
  try {
    const chunk = options.chunkBytes ? { chunkBytes: options.chunkBytes } : {};
    return await hasher.hash({ blob: file, start: 0, end: file.size, ...chunk }, options.onBytes);
  } finally {
    hasher.close();
  }
}

export type RangeHash = (start: number, end: number, onBytes?: (bytes: number) => void) => Promise<string>;

/** A file that cannot be read (gone, changed, no permission): not worth a retry. */
export function unreadable(error: unknown): ApiError {
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(`cannot read the file: ${message}`, 'file_unreadable', 0, undefined, { cause: error });
}

/** Hashes ranges of `file` with `hasher`; rejects at once with the signal's reason on abort. */
export function rangeHasher(file: Blob, hasher: Hasher, signal: AbortSignal, chunkBytes?: number): RangeHash {
  return (start, end, onBytes) =>
    new Promise<string>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = () => reject(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      hasher
        .hash({ blob: file, start, end, ...(chunkBytes ? { chunkBytes } : {}) }, onBytes)
        .then(resolve, (error: unknown) => reject(signal.aborted ? abortReason(signal) : unreadable(error)))
        .finally(() => signal.removeEventListener('abort', onAbort));
    });
}
