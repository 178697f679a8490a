/**
 * A request whose Idempotency-Key is still held by an earlier try (409 idempotency_in_progress,
 * typically one whose api invocation died mid-request) is retried after the server's Retry-After,
 * when the key can be taken over, and does not use up the retries meant for failures; the waits
 * are bounded all the same.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FetchLike, MirrorApi } from '../../../web/client/api.ts';
import { ApiError } from '../../../web/client/errors.ts';

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

const inProgress = (retryAfter: string): Answer => ({
  status: 409,
  body: {
    error: { code: 'idempotency_in_progress', message: 'still in progress', field: 'Idempotency-Key' },
  },
  headers: { 'retry-after': retryAfter },
});
const crashed: Answer = { status: 502, body: { message: 'Internal Server Error' } };
const deleted: Answer = {
  status: 200,
  body: { status: 'committed', path: 'a.txt', version: 2, deleted: true },
};

function fakeFetch(...answers: Answer[]) {
  const at: { ms: number; key: string | undefined }[] = [];
  const fetch: FetchLike = async (_url, init) => {
    at.push({ ms: Date.now(), key: (init.headers as Record<string, string>)['idempotency-key'] });
    const { status, body, headers } = answers[Math.min(at.length, answers.length) - 1] as Answer;
    return new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json', ...headers },
    });
  };
  return { fetch, at };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('409 idempotency_in_progress', () => {
  it('is retried once Retry-After has passed, with the same key, even with a single retry left for failures', async () => {
    vi.useFakeTimers();
    const { fetch, at } = fakeFetch(crashed, inProgress('27'), deleted);
    const api = new MirrorApi({
      baseUrl: 'http://api.test',
      token: 't',
      fetch,
      retries: 1,
      backoff: { baseMs: 10 },
    });
    const done = api.deleteFile('a.txt', {}, { idempotencyKey: 'k-1' }).catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await done).toEqual({ status: 'committed', path: 'a.txt', version: 2, deleted: true });
    expect(at.map((a) => a.key)).toEqual(['k-1', 'k-1', 'k-1']);
    expect((at[2]?.ms ?? 0) - (at[1]?.ms ?? 0)).toBeGreaterThanOrEqual(27_000);
  });

  it('is bounded: a key that stays in progress ends in the ApiError after a few waits', async () => {
    vi.useFakeTimers();
    const { fetch, at } = fakeFetch(inProgress('1'));
    const api = new MirrorApi({
      baseUrl: 'http://api.test',
      token: 't',
      fetch,
      retries: 2,
      backoff: { baseMs: 10 },
    });
    const done = api.deleteFile('a.txt', {}, { idempotencyKey: 'k-2' }).catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    const error = await done;
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: 'idempotency_in_progress', status: 409 });
    // The retries for failures (2) and the waits for a held key (3), no more.
    expect(at).toHaveLength(1 + 2 + 3);
  });
});
