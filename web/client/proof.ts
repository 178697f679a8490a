/**
 * Answering a claim's proof-of-possession challenge (docs/api.md, "Deduplication: proving you
 * hold the bytes"): SHA-256 over the nonce's bytes, then the bytes of each challenged range of
 * the local file, in the challenge's order. Only the ranges are read (a few 64 KiB slices, or
 * the whole file when it is small), so this runs on the calling thread.
 */
import { digestChunks } from '../../common/sha256.ts';
import { wasmSha256 } from '../../common/sha256-wasm.ts';
import type { Challenge as ApiChallenge } from '../../contracts/api.ts';

/** What the proof reads of a challenge. */
export interface Challenge {
  readonly nonce: ApiChallenge['nonce'];
  readonly ranges: readonly Readonly<ApiChallenge['ranges'][number]>[];
}

function base64Bytes(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

const toHex = (buffer: ArrayBuffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

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
  return (await digestChunks([message], wasmSha256)).sha256;
}
