/**
 * The web client asks the API about the path (`GET /v1/paths`) before it hashes the file: a path
 * the claim would refuse (a folder where a file is, a name over 255 bytes for a pull target, ...)
 * fails at once with the claim's error, instead of after minutes of hashing a multi-GiB file. The
 * page and the Uppy plugin upload through `uploadFile`, so both do (uppy-path-check.test.ts).
 */
import Uppy from '@uppy/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { UploadProgress } from '../../../web/client/plan.ts';
import { PATH_CHECK_FROM_BYTES } from '../../../web/client/upload/claim.ts';
import { uploadFile } from '../../../web/client/upload-file.ts';
import MediaMirror from '../../../web/uppy/index.ts';
import {
  blobOf,
  bytesOf,
  contractViolations,
  FakeMirror,
  type RecordedRequest,
  uploadOptions,
} from './fake-api.ts';

afterEach(() => {
  vi.unstubAllGlobals();
  expect(contractViolations.splice(0)).toEqual([]);
});

const CONFLICT = {
  code: 'path_conflict',
  message: 'path lies under "media/clips", which is a file (a pull target cannot hold both)',
  field: 'path',
};

/** The claim's refusal of the path, as the API answers it to `GET /v1/paths`. */
function refusePath(mirror: FakeMirror): void {
  mirror.interceptors.push((r: RecordedRequest) =>
    r.method === 'GET' && new URL(r.url).pathname === '/v1/paths'
      ? new Response(JSON.stringify({ error: CONFLICT }), {
          status: 400,
          headers: { 'content-type': 'application/json' },
        })
      : undefined,
  );
}

/** A file that counts every read of its bytes (hashing reads them all). */
function countingBlob(size: number) {
  const blob = blobOf(bytesOf(size));
  const reads: string[] = [];
  for (const method of ['slice', 'stream', 'arrayBuffer', 'text', 'bytes'] as const) {
    const original = (blob as unknown as Record<string, unknown>)[method];
    if (typeof original !== 'function') continue;
    Object.defineProperty(blob, method, {
      value: (...args: unknown[]) => {
        reads.push(method);
        return original.apply(blob, args);
      },
    });
  }
  return { blob, reads };
}

/** Every file asked about, whatever its size (the rule on size has a test of its own below). */
const checked = (mirror: FakeMirror, extra: Partial<Parameters<typeof uploadFile>[1]> = {}) =>
  uploadOptions(mirror, { pathCheckFromBytes: 0, ...extra });

const calls = (mirror: FakeMirror) =>
  mirror.apiRequests().map((r) => `${r.method} ${new URL(r.url).pathname}`);

describe('uploadFile: the path before the hash', () => {
  it("a path the claim would refuse fails with the claim's error before a byte is read, and nothing is claimed", async () => {
    const mirror = new FakeMirror();
    refusePath(mirror);
    const { blob, reads } = countingBlob(64 * 1024);
    const phases: UploadProgress['phase'][] = [];
    const error = await uploadFile(
      blob,
      checked(mirror, { path: 'media/clips/a.mp4', onProgress: (p) => phases.push(p.phase) }),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ApiError', status: 400, ...CONFLICT });
    expect(reads).toEqual([]);
    expect(phases).toEqual([]);
    expect(calls(mirror)).toEqual(['GET /v1/paths']);
    expect(new URL(mirror.apiRequests()[0]?.url ?? '').searchParams.get('path')).toBe('media/clips/a.mp4');
  });

  it("refuses what the API's path rules refuse, with the API's words", async () => {
    const mirror = new FakeMirror();
    const error = await uploadFile(blobOf(bytesOf(10)), checked(mirror, { path: 'media/versions' })).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'invalid_path', field: 'path', status: 400 });
    expect((error as Error).message).toMatch(/must not end in a file named "versions"/);
    expect(calls(mirror)).toEqual(['GET /v1/paths']);
  });

  it('an accepted path: one check, then the hash and the claim as before', async () => {
    const mirror = new FakeMirror();
    const result = await uploadFile(blobOf(bytesOf(1000)), checked(mirror));
    expect(result.status).toBe('committed');
    expect(calls(mirror).slice(0, 2)).toEqual(['GET /v1/paths', 'POST /v1/uploads']);
    expect(calls(mirror).filter((c) => c === 'GET /v1/paths')).toHaveLength(1);
  });

  it('a file below PATH_CHECK_FROM_BYTES is not asked about: its hash is quicker than the request; from it on, it is', async () => {
    const mirror = new FakeMirror();
    refusePath(mirror);
    // Only the check refuses here (the fake claim takes the path): a small file never asks it.
    const small = await uploadFile(blobOf(bytesOf(PATH_CHECK_FROM_BYTES - 1)), uploadOptions(mirror));
    expect(small.status).toBe('committed');
    expect(calls(mirror)).not.toContain('GET /v1/paths');
    expect(calls(mirror)[0]).toBe('POST /v1/uploads');
    const before = mirror.apiRequests().length;
    const { blob, reads } = countingBlob(PATH_CHECK_FROM_BYTES);
    const large = await uploadFile(blob, uploadOptions(mirror)).catch((e: unknown) => e);
    expect(large).toMatchObject({ status: 400, ...CONFLICT });
    expect(reads).toEqual([]);
    expect(calls(mirror).slice(before)).toEqual(['GET /v1/paths']);
  });

  it('an API from before the route (404 no_route): the claim decides, as before', async () => {
    const mirror = new FakeMirror({ withoutRoutes: ['checkPath'] });
    const result = await uploadFile(blobOf(bytesOf(1000)), checked(mirror));
    expect(result.status).toBe('committed');
    expect(calls(mirror).slice(0, 2)).toEqual(['GET /v1/paths', 'POST /v1/uploads']);
  });

  it('a check that fails (5xx, a 403 scope) is asked once, not retried: the claim decides', async () => {
    for (const status of [503, 403]) {
      const mirror = new FakeMirror();
      mirror.interceptors.push((r) =>
        new URL(r.url).pathname === '/v1/paths'
          ? new Response(JSON.stringify({ message: 'Forbidden' }), { status })
          : undefined,
      );
      const result = await uploadFile(blobOf(bytesOf(1000)), checked(mirror));
      expect(result.status).toBe('committed');
      expect(calls(mirror).filter((c) => c === 'GET /v1/paths')).toHaveLength(1);
    }
  });

  it('a token the API refuses (401) fails the file before a byte is read: the claim would refuse it too', async () => {
    const mirror = new FakeMirror();
    mirror.interceptors.push((r) =>
      new URL(r.url).pathname === '/v1/paths'
        ? new Response(JSON.stringify({ message: 'Unauthorized' }), { status: 401 })
        : undefined,
    );
    const { blob, reads } = countingBlob(64 * 1024);
    const error = await uploadFile(blob, checked(mirror)).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ApiError', status: 401 });
    expect(reads).toEqual([]);
    expect(calls(mirror)).toEqual(['GET /v1/paths']);
  });

  it('a caller that has the hash already (the CLI) is not asked for a check that would spare nothing', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(1000);
    const { createHash } = await import('node:crypto');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const result = await uploadFile(blobOf(bytes), checked(mirror, { sha256 }));
    expect(result.status).toBe('committed');
    expect(calls(mirror)).not.toContain('GET /v1/paths');
  });

  it('an abort while the check is on its way ends the file as an abort, nothing claimed', async () => {
    const mirror = new FakeMirror();
    const controller = new AbortController();
    mirror.interceptors.push((r) => {
      if (new URL(r.url).pathname !== '/v1/paths') return undefined;
      controller.abort(new DOMException('Cancelled', 'AbortError'));
      throw new DOMException('Cancelled', 'AbortError');
    });
    const error = await uploadFile(
      blobOf(bytesOf(1000)),
      checked(mirror, { signal: controller.signal }),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(calls(mirror)).toEqual(['GET /v1/paths']);
  });
});

describe('the Uppy plugin: the path before the hash', () => {
  it("fails the file with the claim's message, never hashing it (no Hashing progress) nor claiming it", async () => {
    const mirror = new FakeMirror();
    refusePath(mirror);
    vi.stubGlobal('fetch', mirror.fetch);
    const uppy = new Uppy().use(MediaMirror, { api: 'https://api.test', token: 'secret', workerUrl: null });
    const errors: string[] = [];
    const hashing: unknown[] = [];
    uppy.on('upload-error', (_file, error) => errors.push(error.message));
    uppy.on('preprocess-progress', (file) => hashing.push(file));
    uppy.addFile({ name: 'a.mp4', type: 'video/mp4', data: new Blob([bytesOf(PATH_CHECK_FROM_BYTES)]) });
    await uppy.upload();
    expect(errors).toEqual([CONFLICT.message]);
    expect(hashing).toEqual([]);
    expect(calls(mirror)).toEqual(['GET /v1/limits', 'GET /v1/paths']);
  });
});
