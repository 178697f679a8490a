/**
 * A SHA-256 whose running state can be saved and loaded again elsewhere (another process, another
 * day): hash-wasm's save()/load(). node:crypto cannot export its state, so this engine is for work
 * that must stop and go on later (the ingest's verification of objects too large for one
 * invocation). Its state is 116 bytes; browser-safe.
 */
import { createSHA256 } from 'hash-wasm';

export interface ResumableSha256 {
  update(chunk: Uint8Array): void;
  /** The running state: load it into a fresh hasher to go on from exactly here. */
  save(): Uint8Array;
  /** Lower-case hex; the hasher is spent afterwards. */
  digestHex(): string;
}

/** A fresh SHA-256, or one going on from a saved state. */
export async function resumableSha256(state?: Uint8Array): Promise<ResumableSha256> {
  const hasher = await createSHA256();
  hasher.init();
  // load() refuses a state not saved by this algorithm (hash-wasm checks its prefix).
  if (state !== undefined) hasher.load(state);
  return {
    update: (chunk) => {
      hasher.update(chunk);
    },
    save: () => hasher.save(),
    digestHex: () => hasher.digest('hex'),
  };
}
