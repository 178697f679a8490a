import { describe, expect, it } from 'vitest';
import { canonicalJson, parseIdempotencyKey, requestHash } from '../../../functions/core/idempotency.js';

describe('Idempotency-Key', () => {
  it('accepts a UUID and opaque tokens of safe characters', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
    expect(parseIdempotencyKey('0b6f3c1e-7a1d-4f7e-9d2b-6b1f8f2a9c10')).toBe(
      '0b6f3c1e-7a1d-4f7e-9d2b-6b1f8f2a9c10',
    );
    expect(parseIdempotencyKey('a')).toBe('a');
    expect(parseIdempotencyKey('x'.repeat(128))).toBe('x'.repeat(128));
    expect(parseIdempotencyKey('upload:2026.11.29_photo~1')).toBe('upload:2026.11.29_photo~1');
  });

  it.each([
    ['empty', ''],
    ['too long', 'x'.repeat(129)],
    ['a space', 'a b'],
    ['a slash', 'a/b'],
    ['a hash', 'a#b'],
    ['non-ASCII', 'clé'],
    ['a newline', 'a\nb'],
  ])('refuses a key with %s: 400 naming the header', (_name, key) => {
    expect(() => parseIdempotencyKey(key)).toThrow(
      expect.objectContaining({ status: 400, code: 'invalid_idempotency_key', field: 'Idempotency-Key' }),
    );
  });

  it('hashes the same request the same whatever its key order, and another request differently', () => {
    const a = { route: 'POST /v1/uploads', path: 'a.png', size: 5, nested: { x: 1, y: [1, 2] } };
    const b = { nested: { y: [1, 2], x: 1 }, size: 5, path: 'a.png', route: 'POST /v1/uploads' };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(requestHash(a)).toBe(requestHash(b));
    expect(requestHash({ ...a, size: 6 })).not.toBe(requestHash(a));
    expect(requestHash({ ...a, route: 'DELETE /v1/files/{path}' })).not.toBe(requestHash(a));
    // An absent optional field and an undefined one are the same request.
    expect(requestHash({ ...a, ifVersion: undefined })).toBe(requestHash(a));
  });
});
