/**
 * hash-wasm as the engine of the one streaming SHA-256: for the browser (and its worker),
 * where node:crypto does not exist. Browser-safe.
 */
import { createSHA256 } from 'hash-wasm';
import type { Sha256EngineFactory } from './sha256.ts';

export const wasmSha256: Sha256EngineFactory = async () => {
  const hasher = await createSHA256();
  hasher.init();
  return {
    update: (chunk) => hasher.update(chunk),
    digestHex: () => hasher.digest('hex'),
  };
};
