/**
 * Removing a file from Uppy (web/uppy) stops its upload, whatever became of an earlier attempt of
 * the same file: Uppy gives a file added again the same id. Against the in-memory API (fake-api.ts).
 */
import Uppy from '@uppy/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import MediaMirror from '../../../web/uppy/index.ts';
import { bytesOf, claimRequests, contractViolations, FakeMirror, type RecordedRequest } from './fake-api.ts';

afterEach(() => {
  vi.unstubAllGlobals();
  expect(contractViolations.splice(0)).toEqual([]);
});

/** Holds every storage PUT until its request is aborted; `arrived` resolves at the next one. */
function holdPuts(mirror: FakeMirror) {
  let arrive: () => void = () => undefined;
  const next = () =>
    new Promise<void>((resolve) => {
      arrive = resolve;
    });
  let arrived = next();
  mirror.interceptors.push((request: RecordedRequest) => {
    if (request.method !== 'PUT' || !request.url.startsWith('https://s3.test')) return undefined;
    arrive();
    return new Promise<Response>((_, reject) => {
      request.signal?.addEventListener('abort', () => reject(request.signal?.reason), { once: true });
    });
  });
  return {
    /** Resolves once a PUT is held (the upload is sending bytes). */
    sending: async () => {
      await arrived;
      arrived = next();
    },
  };
}

describe('MediaMirror: removing a file', () => {
  it('a file removed, added again at once and removed again while it sends: the second attempt stops too, nothing is committed (probe webui)', async () => {
    const mirror = new FakeMirror();
    vi.stubGlobal('fetch', mirror.fetch);
    const uppy = new Uppy().use(MediaMirror, {
      api: 'https://api.test/',
      token: 'secret',
      workerUrl: null,
      retries: 0,
      prefix: 'uploads/',
    });
    const done: string[] = [];
    uppy.on('upload-success', (file) => done.push(file?.id ?? 'a removed file'));
    const data = new File([bytesOf(100_000, 5)], 'photo.jpg', { type: 'image/jpeg', lastModified: 1 });
    const add = () => uppy.addFile({ name: data.name, type: data.type, data });
    const puts = holdPuts(mirror);

    const id = add();
    const first = uppy.upload();
    await puts.sending();
    uppy.removeFile(id);
    // Added again at once (Uppy gives it the same id): its upload starts before the first one's
    // abort at the API has been answered.
    expect(add()).toBe(id);
    const second = uppy.upload();
    await first;
    await puts.sending();
    uppy.removeFile(id);
    await second;

    // Before, the first attempt's end unregistered the second's controller: the second removal
    // aborted nothing, and the file was committed and reported complete once removed.
    expect(done).toEqual([]);
    expect(mirror.versions.get('uploads/photo.jpg')).toBeUndefined();
    expect(claimRequests(mirror)).toHaveLength(2);
    expect(mirror.apiRequests('DELETE')).toHaveLength(2);
  });
});
