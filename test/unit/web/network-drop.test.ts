/**
 * A short network drop (a Wi-Fi handover, a tunnel) must not fail an upload (probe 13, W5): with
 * 4 retries and the default backoff, 4 to 8 s without network failed an upload of any size. The
 * client waits while the browser says it is offline (`navigator.onLine`), spending no retry, and
 * retries network errors over a window of time rather than a count.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UploadError, uploadFile } from '../../../web/client/upload-file.ts';
import { blobOf, bytesOf, FakeMirror, MiB, uploadOptions } from './fake-api.ts';

afterEach(() => {
  vi.unstubAllGlobals();
});

/** Storage PUTs fail as a dropped network does while `down()` says so. */
function dropPuts(mirror: FakeMirror, down: () => boolean): { failed: number } {
  const seen = { failed: 0 };
  mirror.interceptors.push((r) => {
    if (r.method !== 'PUT' || !down()) return undefined;
    seen.failed++;
    throw new TypeError('Failed to fetch');
  });
  return seen;
}

describe('a network drop', () => {
  it('offline (navigator.onLine false): the client waits for the network without spending its retries, then completes', async () => {
    let online = false;
    vi.stubGlobal('navigator', {
      get onLine() {
        return online;
      },
    });
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    // The network comes back a while after the first PUT met it down: timed from that PUT, not from
    // the start, since hashing and the claim take longer than any fixed wait on a loaded machine.
    let comingBack = false;
    const drop = dropPuts(mirror, () => {
      if (!online && !comingBack) {
        comingBack = true;
        setTimeout(() => {
          online = true;
        }, 500);
      }
      return !online;
    });
    const result = await uploadFile(blobOf(bytesOf(11 * MiB)), uploadOptions(mirror, { retries: 1 }));
    expect(result).toMatchObject({ status: 'committed', version: 1, partsSent: 3 });
    // Each part failed once (the drop), then waited for the network, not through its one retry.
    expect(drop.failed).toBeGreaterThanOrEqual(1);
    expect(drop.failed).toBeLessThanOrEqual(3);
  }, 15_000);

  it('online but failing (a path that drops packets): network errors are retried for a window, not 4 times', async () => {
    const mirror = new FakeMirror();
    const until = Date.now() + 400;
    const drop = dropPuts(mirror, () => Date.now() < until);
    // Default retries, a fast backoff: 5 tries take a few ms, far less than the drop.
    const result = await uploadFile(blobOf(bytesOf(1000)), uploadOptions(mirror));
    expect(result).toMatchObject({ status: 'committed', version: 1 });
    expect(drop.failed).toBeGreaterThan(5);
  }, 15_000);

  it('the window ends: network errors past retryWindowMs fail the upload, saying how many tries', async () => {
    const mirror = new FakeMirror();
    dropPuts(mirror, () => true);
    const started = Date.now();
    const error = await uploadFile(
      blobOf(bytesOf(1000)),
      uploadOptions(mirror, { retryWindowMs: 300 }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UploadError);
    expect((error as Error).message).toMatch(/could not reach storage .*\(gave up after \d+ attempts\)/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  }, 15_000);

  it('a number of retries given is kept: no window unless asked for', async () => {
    const mirror = new FakeMirror();
    dropPuts(mirror, () => true);
    const error = await uploadFile(blobOf(bytesOf(1000)), uploadOptions(mirror, { retries: 2 })).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toMatch(/gave up after 3 attempts/);
  });

  it('the window is for no answer at all: a storage that answers 503 fails after the retries', async () => {
    const mirror = new FakeMirror();
    mirror.interceptors.push((r) => (r.method === 'PUT' ? new Response('', { status: 503 }) : undefined));
    const error = await uploadFile(blobOf(bytesOf(1000)), uploadOptions(mirror)).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/storage answered 503 \(gave up after 5 attempts\)/);
  });

  it("the API calls of uploadFile's own client get the window too", async () => {
    const mirror = new FakeMirror();
    const until = Date.now() + 300;
    let failed = 0;
    mirror.interceptors.push((r) => {
      if (r.method !== 'POST' || Date.now() >= until) return undefined;
      failed++;
      throw new TypeError('Failed to fetch');
    });
    const result = await uploadFile(blobOf(bytesOf(1000)), uploadOptions(mirror));
    expect(result).toMatchObject({ status: 'committed', version: 1 });
    expect(failed).toBeGreaterThan(5);
  }, 15_000);
});
