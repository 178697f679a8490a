import { describe, expect, it } from 'vitest';
import { MULTIPART_ABORT_AFTER_DAYS } from '../../../contracts/ledger-keys.ts';
import {
  expiresAtFor,
  isLapsed,
  PUT_GRACE_MS,
  RESUMABLE_FOR_MS,
  SLOWEST_PUT_BYTES_PER_SECOND,
  uploadExpiresAt,
} from '../../../functions/core/expiry.js';

const now = new Date('2026-11-29T12:00:00.000Z');

describe('upload expiry', () => {
  it('a single PUT expires after its URL lifetime plus a grace that grows with its size', () => {
    expect(expiresAtFor('put', now, 0, 900)).toBe(
      new Date(now.getTime() + 900_000 + PUT_GRACE_MS).toISOString(),
    );
    const big = 1024 * 1024 * 1024;
    const expected = now.getTime() + 900_000 + PUT_GRACE_MS + (big / SLOWEST_PUT_BYTES_PER_SECOND) * 1000;
    expect(Date.parse(expiresAtFor('put', now, big, 900))).toBe(expected);
  });

  it('a multipart upload expires at the resumable window, before the lifecycle rule aborts it at storage', () => {
    expect(expiresAtFor('multipart', now, 10 ** 9, 900)).toBe(
      new Date(now.getTime() + RESUMABLE_FOR_MS).toISOString(),
    );
    expect(RESUMABLE_FOR_MS).toBeLessThan(MULTIPART_ABORT_AFTER_DAYS * 24 * 60 * 60 * 1000);
    expect(RESUMABLE_FOR_MS).toBeGreaterThan(12 * 60 * 60 * 1000);
  });

  it('uploads recorded before expiry existed get the longest window they could have had', () => {
    const legacy = { createdAt: now.toISOString(), size: 5, multipart: undefined, expiresAt: undefined };
    expect(uploadExpiresAt(legacy).getTime()).toBe(Date.parse(expiresAtFor('put', now, 5, 900)));
    const legacyMultipart = { ...legacy, multipart: { multipartId: 'm', partSize: 1, partCount: 1 } };
    expect(uploadExpiresAt(legacyMultipart).getTime()).toBe(now.getTime() + RESUMABLE_FOR_MS);
  });

  it('is lapsed only strictly after its expiry', () => {
    const upload = { createdAt: now.toISOString(), size: 5, expiresAt: '2026-11-29T12:20:00.000Z' };
    expect(isLapsed(upload, new Date('2026-11-29T12:20:00.000Z'))).toBe(false);
    expect(isLapsed(upload, new Date('2026-11-29T12:20:00.001Z'))).toBe(true);
  });
});
