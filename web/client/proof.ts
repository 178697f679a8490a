/**
 * Answering a claim's proof-of-possession challenge (docs/api.md, "Deduplication: proving you
 * hold the bytes"): SHA-256 over the nonce's bytes, then the bytes of each challenged range of
 * the local file, in the challenge's order. Only the ranges are read (a few 64 KiB slices, or
 * the whole file when it is small), so this runs on the calling thread.
 */
import { createSHA256 } from 'hash-wasm';

export interface Challenge {
  /** Base64 of 32 random bytes. */
  readonly nonce: string;
  readonly ranges: readonly { readonly offset: number; readonly length: number }[];
  readonly expiresAt?: string;
}

function base64Bytes(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

const toHex = (buffer: ArrayBuffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

/** Whether an API answer carries a challenge this module can answer. */
export function isChallenge(value: unknown): value is Challenge {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as { nonce?: unknown; ranges?: unknown };
  return (
    typeof c.nonce === 'string' &&
    Array.isArray(c.ranges) &&
    c.ranges.every(
      (r: { offset?: unknown; length?: unknown }) =>
        Number.isSafeInteger(r?.offset) && Number.isSafeInteger(r?.length),
    )
  );
}

/**
 * The hex digest that proves `file` holds the challenged bytes. A range past the end of the
 * file (the file is not what was declared) reads short; the digest is then simply wrong and
 * the server asks for the bytes.
 */
export async function proofDigest(file: Blob, challenge: Challenge): Promise<string> {
  const nonce = base64Bytes(challenge.nonce);
  const slices = await Promise.all(
    challenge.ranges.map(
      async (r) => new Uint8Array(await file.slice(r.offset, r.offset + r.length).arrayBuffer()),
    ),
  );
  const total = slices.reduce((sum, s) => sum + s.length, nonce.length);
  const message = new Uint8Array(total);
  message.set(nonce, 0);
  let at = nonce.length;
  for (const s of slices) {
    message.set(s, at);
    at += s.length;
  }
  // WebCrypto exists only in secure contexts (HTTPS, loopback): elsewhere hash-wasm, as hashing.ts does.
  const subtle = globalThis.crypto?.subtle;
  if (subtle !== undefined) return toHex(await subtle.digest('SHA-256', message));
  const hasher = await createSHA256();
  hasher.init();
  hasher.update(message);
  return hasher.digest('hex');
}
