import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  issueChallenge,
  NONCE_BYTES,
  PROOF_RANGE_BYTES,
  PROOF_RANGE_COUNT,
  PROOF_WHOLE_FILE_BYTES,
  ProofNotAcceptedError,
  proofDigest,
} from '../../../functions/core/possession.js';
import { proofDigest as clientProofDigest } from '../../../web/client/proof.js';

const expiresAt = new Date('2026-01-01T00:15:00Z');

describe('issueChallenge', () => {
  it('a fresh 32-byte nonce each time, and the expiry given', () => {
    const a = issueChallenge(10, expiresAt);
    const b = issueChallenge(10, expiresAt);
    expect(Buffer.from(a.nonce, 'base64')).toHaveLength(NONCE_BYTES);
    expect(a.nonce).not.toBe(b.nonce);
    expect(a.expiresAt).toBe('2026-01-01T00:15:00.000Z');
  });

  it('an empty file has nothing to read; a small one is read whole', () => {
    expect(issueChallenge(0, expiresAt).ranges).toEqual([]);
    expect(issueChallenge(1, expiresAt).ranges).toEqual([{ offset: 0, length: 1 }]);
    expect(issueChallenge(PROOF_WHOLE_FILE_BYTES, expiresAt).ranges).toEqual([
      { offset: 0, length: PROOF_WHOLE_FILE_BYTES },
    ]);
  });

  it('larger files: a few full ranges, all inside the declared size, up to its last byte', () => {
    fc.assert(
      fc.property(fc.integer({ min: PROOF_WHOLE_FILE_BYTES + 1, max: 50 * 1024 ** 3 }), (size) => {
        const { ranges } = issueChallenge(size, expiresAt);
        expect(ranges).toHaveLength(PROOF_RANGE_COUNT);
        for (const r of ranges) {
          expect(r.length).toBe(PROOF_RANGE_BYTES);
          expect(r.offset).toBeGreaterThanOrEqual(0);
          expect(r.offset + r.length).toBeLessThanOrEqual(size);
        }
      }),
    );
    const size = PROOF_WHOLE_FILE_BYTES + 1;
    const lastStart = size - PROOF_RANGE_BYTES;
    const edges = issueChallenge(size, expiresAt, {
      bytes: (n) => new Uint8Array(n),
      int: (max) => max - 1,
    });
    expect(edges.ranges.every((r) => r.offset === lastStart)).toBe(true);
  });

  it('ranges are spread at random: two challenges of a large file differ', () => {
    const size = 1024 ** 3;
    expect(issueChallenge(size, expiresAt).ranges).not.toEqual(issueChallenge(size, expiresAt).ranges);
  });
});

describe('proofDigest', () => {
  const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 251));

  it('is SHA-256 over the nonce bytes, then each range in order', () => {
    const nonce = Buffer.alloc(NONCE_BYTES, 9).toString('base64');
    const ranges = [bytes.subarray(5, 10), bytes.subarray(0, 3)];
    const expected = createHash('sha256')
      .update(Buffer.alloc(NONCE_BYTES, 9))
      .update(ranges[0] as Buffer)
      .update(ranges[1] as Buffer)
      .digest('hex');
    expect(proofDigest(nonce, ranges)).toBe(expected);
    expect(proofDigest(nonce, [...ranges].reverse())).not.toBe(expected);
  });

  it("the browser client's digest of a file equals the server's of the same bytes", async () => {
    const challenge = issueChallenge(bytes.length, expiresAt);
    const server = proofDigest(
      challenge.nonce,
      challenge.ranges.map((r) => bytes.subarray(r.offset, r.offset + r.length)),
    );
    expect(await clientProofDigest(new Blob([new Uint8Array(bytes)]), challenge)).toBe(server);
    // Other bytes at the same ranges do not prove anything.
    const other = Buffer.from(bytes);
    for (const r of challenge.ranges) other[r.offset] = (other[r.offset] ?? 0) ^ 1;
    expect(await clientProofDigest(new Blob([new Uint8Array(other)]), challenge)).not.toBe(server);
  });
});

describe('the client digest without WebCrypto (a page served over plain HTTP)', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('falls back to hash-wasm and gets the same digest', async () => {
    const bytes = Buffer.from(Array.from({ length: 400_000 }, (_, i) => (i * 13) % 256));
    const challenge = issueChallenge(bytes.length, expiresAt);
    const server = proofDigest(
      challenge.nonce,
      challenge.ranges.map((r) => bytes.subarray(r.offset, r.offset + r.length)),
    );
    vi.stubGlobal('crypto', {});
    expect(globalThis.crypto.subtle).toBeUndefined();
    expect(await clientProofDigest(new Blob([new Uint8Array(bytes)]), challenge)).toBe(server);
  });
});

describe('ProofNotAcceptedError', () => {
  it('is one answer: 422, proof_not_accepted, field digest, "upload the bytes"', () => {
    const error = new ProofNotAcceptedError();
    expect({ status: error.status, code: error.code, field: error.field, message: error.message }).toEqual({
      status: 422,
      code: 'proof_not_accepted',
      field: 'digest',
      message: 'upload the bytes',
    });
  });
});
