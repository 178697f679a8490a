/**
 * The storage PUTs' abort signals (web/client/upload/storage.ts): every part of an upload is PUT
 * under the upload's one signal, and fetch (undici) keeps an 'abort' listener on the signal it is
 * given until that request is garbage-collected, so a 6,400-part upload would pile thousands of
 * listeners on it unless each PUT hands fetch a signal of its own.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { fetchPutter } from '../../../web/client/upload/storage.ts';

const abortListeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

describe('fetchPutter abort signals', () => {
  it("200 PUTs under one upload signal leave no listener on it, each PUT's fetch with its own signal", async () => {
    const uses = new Map<AbortSignal | undefined, number>();
    // Like undici: the listener stays on the signal fetch was given.
    const fetch = (async (_url: string, init: RequestInit) => {
      const signal = init.signal ?? undefined;
      uses.set(signal, (uses.get(signal) ?? 0) + 1);
      signal?.addEventListener('abort', () => undefined);
      return new Response('', { status: 200, headers: { etag: '"e"' } });
    }) as typeof globalThis.fetch;
    const put = fetchPutter(fetch);
    const upload = new AbortController();
    for (let i = 0; i < 200; i++) {
      const answer = await put(
        'http://s3.test/b?part=1',
        {},
        new Blob(['abc']),
        upload.signal,
        () => undefined,
      );
      expect(answer.etag).toBe('"e"');
    }
    expect(abortListeners(upload.signal)).toBe(0);
    expect(uses.has(upload.signal)).toBe(false);
    expect(uses.size).toBe(200);
  });

  it("the upload's abort still stops a PUT in flight, with the upload's reason", async () => {
    const fetch = ((_url: string, init: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        const signal = init.signal as AbortSignal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      })) as typeof globalThis.fetch;
    const upload = new AbortController();
    const reason = new Error('user cancelled');
    const put = fetchPutter(fetch)('http://s3.test/b', {}, new Blob(['abc']), upload.signal, () => undefined);
    setTimeout(() => upload.abort(reason), 10);
    await expect(put).rejects.toBe(reason);
    expect(abortListeners(upload.signal)).toBe(0);
  });
});
