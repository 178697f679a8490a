/**
 * The HTTP side of Idempotency-Key (handlers/idempotent.ts): a claim holds its key for the Lambda
 * invocation's remaining time, and a retry meanwhile is answered 409 with the seconds until it may
 * take the key over (Retry-After). In memory, a clock the test moves.
 */
import { describe, expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { answerOnce } from '../../../functions/handlers/idempotent.js';
import { httpEvent, lambdaContext } from '../../support/api-events.js';

describe('answerOnce', () => {
  it("holds the key for the invocation's remaining time; a retry meanwhile gets 409 with Retry-After until then", async () => {
    const t0 = Date.parse('2026-11-30T06:00:00.000Z');
    let nowMs = t0;
    const deps = { ledger: new InMemoryLedger(), clock: { now: () => new Date(nowMs) } };
    const event = httpEvent('DELETE', '/v1/files/a', { headers: { 'idempotency-key': 'key-1' } });
    const request = { route: 'DELETE /v1/files/{path}', path: 'a' };
    const dying = { ...lambdaContext('api'), getRemainingTimeInMillis: () => 12_000 };
    // The first invocation never answers (its Lambda was killed mid-request).
    void answerOnce(deps, event, request, () => new Promise(() => undefined), dying);
    await new Promise((resolve) => setTimeout(resolve, 10));

    nowMs = t0 + 2_000;
    const busy = await answerOnce(
      deps,
      event,
      request,
      async () => ({ statusCode: 200, body: {} }),
      lambdaContext('api'),
    );
    expect(busy.statusCode).toBe(409);
    expect(busy.headers).toEqual({ 'retry-after': '11' });
    expect(busy.body).toEqual({
      error: {
        code: 'idempotency_in_progress',
        message: 'a request with this Idempotency-Key is still in progress; retry later for its answer',
        field: 'Idempotency-Key',
      },
    });

    nowMs = t0 + 2_000 + 11_000;
    const taken = await answerOnce(
      deps,
      event,
      request,
      async () => ({ statusCode: 200, body: { n: 2 } }),
      lambdaContext('api'),
    );
    expect(taken).toEqual({ statusCode: 200, body: { n: 2 }, headers: {} });
  });
});
