import { describe, expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { IdempotencyInProgressError } from '../../../functions/core/errors.js';
import {
  canonicalJson,
  IDEMPOTENCY_LOCK_MS,
  parseIdempotencyKey,
  requestHash,
  runOnce,
} from '../../../functions/core/idempotency.js';

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

describe('a claim whose invocation died (in memory, a clock the test moves)', () => {
  const t0 = Date.parse('2026-11-30T06:00:00.000Z');
  function world() {
    let nowMs = t0;
    const deps = { ledger: new InMemoryLedger(), clock: { now: () => new Date(nowMs) } };
    return { deps, at: (ms: number) => (nowMs = t0 + ms) };
  }
  const answer = (n: number) => async () => ({ statusCode: 201, body: { n } });
  const inProgress = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected idempotency_in_progress');
      },
      (error: unknown) => {
        expect(error).toBeInstanceOf(IdempotencyInProgressError);
        return (error as IdempotencyInProgressError).retryAfterSeconds;
      },
    );

  it("holds the key until the deadline of the invocation that took it; the 409's Retry-After counts down to it; then a retry takes over", async () => {
    const { deps, at } = world();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The first request's invocation has 29 s left; it hangs, as one whose Lambda was killed does.
    const first = runOnce(
      deps,
      'k',
      { route: 'r' },
      async () => {
        await gate;
        return { statusCode: 201, body: { n: 1 } };
      },
      { remainingMs: 29_000 },
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    at(10_000);
    expect(await inProgress(runOnce(deps, 'k', { route: 'r' }, answer(2), { remainingMs: 29_000 }))).toBe(20);
    at(28_500);
    expect(await inProgress(runOnce(deps, 'k', { route: 'r' }, answer(2)))).toBe(1);
    at(29_000);
    expect(await inProgress(runOnce(deps, 'k', { route: 'r' }, answer(2)))).toBe(1);
    // Past the deadline the first invocation cannot be running: the retry takes the key over.
    at(29_001);
    expect(await runOnce(deps, 'k', { route: 'r' }, answer(2), { remainingMs: 29_000 })).toEqual({
      statusCode: 201,
      body: { n: 2 },
      replayed: false,
    });
    // Should the first answer after all, it no longer holds the key: the retry's answer is the one kept.
    release();
    await first;
    at(40_000);
    expect(await runOnce(deps, 'k', { route: 'r' }, answer(3))).toEqual({
      statusCode: 201,
      body: { n: 2 },
      replayed: true,
    });
  });

  it('another request under a key in progress is still refused as reused, not told to wait', async () => {
    const { deps, at } = world();
    void runOnce(deps, 'k', { route: 'r' }, () => new Promise(() => undefined), { remainingMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    at(1_000);
    await expect(runOnce(deps, 'k', { route: 'other' }, answer(2))).rejects.toMatchObject({
      code: 'idempotency_key_reused',
    });
  });

  it('without an invocation deadline (no Lambda context) the key is held IDEMPOTENCY_LOCK_MS', async () => {
    const { deps, at } = world();
    void runOnce(deps, 'k', { route: 'r' }, () => new Promise(() => undefined));
    await new Promise((resolve) => setTimeout(resolve, 10));
    at(0);
    expect(await inProgress(runOnce(deps, 'k', { route: 'r' }, answer(2)))).toBe(
      IDEMPOTENCY_LOCK_MS / 1000 + 1,
    );
    at(IDEMPOTENCY_LOCK_MS + 1);
    expect(await runOnce(deps, 'k', { route: 'r' }, answer(2))).toMatchObject({ body: { n: 2 } });
  });
});
