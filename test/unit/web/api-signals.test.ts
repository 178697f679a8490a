/**
 * The API client's abort signals (web/client/api.ts): fetch (undici) keeps an 'abort' listener on
 * the signal it is given until that request is garbage-collected, so a signal that outlives one
 * request (the caller's, or none at all) must never reach fetch, or a long poll loop piles up
 * listeners (MaxListenersExceededWarning at 1,500 in a chaos run's convergence).
 */
import { getEventListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FetchLike, MirrorApi } from '../../../web/client/api.ts';
import { ApiError } from '../../../web/client/errors.ts';

const health = () => ({ status: 'ok', time: '2030-01-01T00:00:00Z' });
const abortListeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

/** A fetch that, like undici's, never lets go of its listener on the signal (GC aside); it counts the uses of each signal. */
function holdingFetch(): { fetch: FetchLike; uses: Map<AbortSignal | undefined, number> } {
  const uses = new Map<AbortSignal | undefined, number>();
  const fetch: FetchLike = async (_url, init) => {
    const signal = init.signal ?? undefined;
    uses.set(signal, (uses.get(signal) ?? 0) + 1);
    signal?.addEventListener('abort', () => undefined);
    return new Response(JSON.stringify(health()), { status: 200 });
  };
  return { fetch, uses };
}

const client = (fetch: FetchLike, timeoutMs?: number) =>
  new MirrorApi({ baseUrl: 'http://127.0.0.1:9/', token: 'tok', fetch, timeoutMs });

describe('MirrorApi abort signals', () => {
  let server: Server;
  let baseUrl = '';
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/v1/health') res.end(JSON.stringify(health()));
      // Anything else hangs, as a stalled network would.
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("a long-lived caller signal keeps no listeners from 300 calls through Node's fetch", async () => {
    const api = new MirrorApi({ baseUrl, token: 'tok' });
    const caller = new AbortController();
    for (let i = 0; i < 300; i++) await api.health({ signal: caller.signal });
    expect(abortListeners(caller.signal)).toBeLessThanOrEqual(1);
  });

  it('hands fetch a signal of its own per request, with and without a caller signal or timeout', async () => {
    const caller = new AbortController();
    for (const timeoutMs of [undefined, 60_000]) {
      const { fetch, uses } = holdingFetch();
      const api = client(fetch, timeoutMs);
      for (let i = 0; i < 50; i++) {
        await api.health();
        await api.health({ signal: caller.signal });
      }
      expect([...uses.values()].every((n) => n === 1)).toBe(true);
      expect(uses.has(caller.signal)).toBe(false);
      expect(uses.size).toBe(100);
    }
    expect(abortListeners(caller.signal)).toBe(0);
  });

  it('many requests in flight at once without a caller signal share no signal: no listener warning', async () => {
    // Before, calls without a signal were linked to one module-wide never-aborting signal: 16 in
    // flight (a sync's jobs) held 16 listeners on it, and Node warned past 10.
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      let release = () => {};
      const allInFlight = new Promise<void>((resolve) => {
        release = resolve;
      });
      let inFlight = 0;
      const fetch: FetchLike = async () => {
        if (++inFlight === 16) release();
        await allInFlight;
        return new Response(JSON.stringify(health()), { status: 200 });
      };
      const api = client(fetch);
      await Promise.all(Array.from({ length: 16 }, () => api.health()));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning');
  });

  it('many calls waiting to retry at once without a caller signal: no listener warning', async () => {
    // Their backoff waits listened to the same module-wide never-aborting signal.
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const answered = new Set<number>();
      let n = 0;
      const fetch: FetchLike = async () => {
        const call = n++;
        // The first 16 answers are 503s: every call waits to retry, all at the same time.
        if (call < 16)
          return new Response('{"error":{"code":"unavailable","message":"busy"}}', { status: 503 });
        answered.add(call);
        return new Response(JSON.stringify(health()), { status: 200 });
      };
      const api = new MirrorApi({
        baseUrl: 'http://127.0.0.1:9/',
        token: 'tok',
        fetch,
        backoff: { baseMs: 50, maxMs: 50 },
      });
      await Promise.all(Array.from({ length: 16 }, () => api.health()));
      await new Promise((resolve) => setImmediate(resolve));
      expect(answered.size).toBe(16);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning');
  });

  it("the caller's abort still stops a request in flight, with the caller's reason", async () => {
    const api = new MirrorApi({ baseUrl, token: 'tok', retries: 0 });
    const caller = new AbortController();
    const reason = new Error('user cancelled');
    const call = api.limits({ signal: caller.signal });
    setTimeout(() => caller.abort(reason), 50);
    await expect(call).rejects.toBe(reason);
    expect(abortListeners(caller.signal)).toBe(0);
  });

  it('timeoutMs still ends a stalled request as a transient error, leaving the caller signal clean', async () => {
    const api = new MirrorApi({ baseUrl, token: 'tok', timeoutMs: 100, retries: 0 });
    const caller = new AbortController();
    const error = await api.limits({ signal: caller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).transient).toBe(true);
    expect(caller.signal.aborted).toBe(false);
    expect(abortListeners(caller.signal)).toBe(0);
  });
});
