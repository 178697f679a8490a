/**
 * The Uppy plugin (web/uppy) with two files of one batch that map to one mirror path (probe
 * W6): `photo.jpg` from two folders used to become versions 1 and 2 of one path, both shown
 * complete, the head whichever committed last. Against the in-memory API (fake-api.ts).
 */
import Uppy from '@uppy/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import MediaMirror, { type MediaMirrorOptions } from '../../../web/uppy/index.ts';
import { bytesOf, claimRequests, contractViolations, FakeMirror } from './fake-api.ts';

const api = 'https://api.test/';

afterEach(() => {
  vi.unstubAllGlobals();
  expect(contractViolations.splice(0)).toEqual([]);
});

/** Uppy with the plugin against a fresh fake API; every file's end is recorded by name. */
function setUp(options: Partial<MediaMirrorOptions> = {}) {
  const mirror = new FakeMirror();
  vi.stubGlobal('fetch', mirror.fetch);
  const uppy = new Uppy().use(MediaMirror, {
    api,
    token: 'secret',
    workerUrl: null,
    retries: 0,
    prefix: 'uploads/',
    ...options,
  });
  const errors: { id: string; message: string }[] = [];
  const done: string[] = [];
  uppy.on('upload-error', (file, error) => errors.push({ id: file?.id ?? '', message: error.message }));
  uppy.on('upload-success', (file) => done.push(file?.id ?? ''));
  const add = (name: string, bytes: Uint8Array<ArrayBuffer>, lastModified: number, relativePath?: string) =>
    uppy.addFile({
      name,
      type: 'image/jpeg',
      data: new File([bytes], name, { type: 'image/jpeg', lastModified }),
      ...(relativePath === undefined ? {} : { meta: { relativePath } }),
    });
  const claimedPaths = () => claimRequests(mirror).map((r) => (r.body as { path: string }).path);
  return { mirror, uppy, errors, done, add, claimedPaths };
}

describe('MediaMirror: two files of one upload that map to one path', () => {
  it('two different photo.jpg: the first added is uploaded, the later fails naming the path and the other file, and sends nothing', async () => {
    const { mirror, uppy, errors, done, add, claimedPaths } = setUp();
    // The later file is the smaller one: it would finish (and be the head) first.
    const first = add('photo.jpg', bytesOf(200_000, 1), 1);
    const later = add('photo.jpg', bytesOf(21_000, 2), 2);
    await uppy.upload();
    expect(done).toEqual([first]);
    expect(errors).toEqual([
      {
        id: later,
        message:
          'another file, "photo.jpg" (200,000 bytes), also goes to "uploads/photo.jpg", with other content: ' +
          'this one would replace it. Rename this file (or remove the other) and retry',
      },
    ]);
    expect(claimedPaths()).toEqual(['uploads/photo.jpg']);
    expect(mirror.versions.get('uploads/photo.jpg')).toBe(1);
  });

  it('Retry without renaming fails again; renamed in Uppy (meta.name), Retry uploads it under its new name', async () => {
    const { mirror, uppy, errors, done, add, claimedPaths } = setUp();
    const first = add('photo.jpg', bytesOf(200_000, 1), 1);
    const later = add('photo.jpg', bytesOf(21_000, 2), 2);
    await uppy.upload();
    await uppy.retryUpload(later);
    expect(errors.map((e) => e.id)).toEqual([later, later]);
    expect(errors[1]?.message).toMatch(/also goes to "uploads\/photo\.jpg"/);
    expect(claimedPaths()).toEqual(['uploads/photo.jpg']);

    uppy.setFileMeta(later, { name: 'photo (2).jpg' });
    await uppy.retryUpload(later);
    expect(done).toEqual([first, later]);
    expect(claimedPaths()).toEqual(['uploads/photo.jpg', 'uploads/photo (2).jpg']);
    expect(mirror.versions.get('uploads/photo.jpg')).toBe(1);
  });

  it('the other file removed, Retry uploads the later one as the next version (the user chose it)', async () => {
    const { mirror, uppy, errors, done, add } = setUp();
    const first = add('photo.jpg', bytesOf(200_000, 1), 1);
    const later = add('photo.jpg', bytesOf(21_000, 2), 2);
    await uppy.upload();
    uppy.removeFile(first);
    await uppy.retryUpload(later);
    expect(errors.map((e) => e.id)).toEqual([later]);
    expect(done).toEqual([first, later]);
    expect(mirror.versions.get('uploads/photo.jpg')).toBe(2);
  });

  it('the same bytes twice (a copy from another folder): both complete, nothing to refuse', async () => {
    const { uppy, errors, done, add } = setUp();
    const bytes = bytesOf(50_000, 3);
    const first = add('photo.jpg', bytes, 1);
    const copy = add('photo.jpg', bytes.slice(), 2);
    await uppy.upload();
    expect(errors).toEqual([]);
    expect(done.sort()).toEqual([first, copy].sort());
  });

  it('"cancel all" (or removing the file) while it is compared with the other: it is not hashed, claimed or committed (probe webui)', async () => {
    for (const stop of ['cancelAll', 'removeFile'] as const) {
      const { mirror, uppy, errors, done, add, claimedPaths } = setUp();
      const bytes = bytesOf(50_000, 3);
      const first = add('photo.jpg', bytes, 1);
      const copy = add('photo.jpg', bytes.slice(), 2);
      // The comparison reads both files (two large ones take seconds): held until the user has acted.
      const data = uppy.getFile(copy).data as Blob;
      const slice = data.slice.bind(data);
      let comparing: () => void = () => undefined;
      const compared = new Promise<void>((resolve) => {
        comparing = resolve;
      });
      let release: () => void = () => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      vi.spyOn(data, 'slice').mockImplementationOnce((...args) => {
        comparing();
        const part = slice(...args);
        return Object.assign(part, { arrayBuffer: () => held.then(() => slice(...args).arrayBuffer()) });
      });
      const firstDone = new Promise<void>((resolve) => {
        uppy.on('upload-success', (file) => {
          if (file?.id === first) resolve();
        });
      });
      const upload = uppy.upload();
      await Promise.all([compared, firstDone]);
      if (stop === 'cancelAll') uppy.cancelAll();
      else uppy.removeFile(copy);
      release();
      await upload;
      // Before, the copy went on once compared: hashed, claimed, sent and committed, cancelled or not.
      expect(claimedPaths(), stop).toEqual(['uploads/photo.jpg']);
      expect(done, stop).toEqual([first]);
      expect(errors, stop).toEqual([]);
      expect(mirror.versions.get('uploads/photo.jpg'), stop).toBe(1);
      vi.unstubAllGlobals();
    }
  });

  it('the same name in two folders of a folder drop: two paths, both uploaded (the default path is unchanged)', async () => {
    const { uppy, errors, add, claimedPaths } = setUp();
    add('photo.jpg', bytesOf(20_000, 1), 1, 'trip/photo.jpg');
    add('photo.jpg', bytesOf(21_000, 2), 2, 'home/photo.jpg');
    await uppy.upload();
    expect(errors).toEqual([]);
    expect(claimedPaths().sort()).toEqual(['uploads/home/photo.jpg', 'uploads/trip/photo.jpg']);
  });

  it('café.jpg named in NFC and in NFD (a Mac folder, a download): one path at the API, so the later fails the same way', async () => {
    const { uppy, errors, done, add, claimedPaths } = setUp();
    const nfc = 'caf\u00e9.jpg';
    const nfd = 'cafe\u0301.jpg';
    const first = add(nfc, bytesOf(20_000, 1), 1);
    const later = add(nfd, bytesOf(21_000, 2), 2);
    await uppy.upload();
    // The API stores both under the NFC path: sent both, the later would silently be its version 2.
    expect(done).toEqual([first]);
    expect(errors).toEqual([
      {
        id: later,
        message: expect.stringMatching(/^another file, "caf\u00e9\.jpg" \(20,000 bytes\), also goes to /),
      },
    ]);
    expect(claimedPaths()).toEqual([`uploads/${nfc}`]);
  });

  it('a pathOf that maps two files to one path: the later fails the same way', async () => {
    const { uppy, errors, done, add } = setUp({ pathOf: (file) => `flat/${file.name ?? file.id}` });
    const first = add('photo.jpg', bytesOf(20_000, 1), 1, 'trip/photo.jpg');
    const later = add('photo.jpg', bytesOf(21_000, 2), 2, 'home/photo.jpg');
    await uppy.upload();
    expect(done).toEqual([first]);
    expect(errors).toEqual([
      {
        id: later,
        message: expect.stringMatching(
          /^another file, "trip\/photo\.jpg" \(20,000 bytes\), also goes to "flat\/photo\.jpg", with other content/,
        ),
      },
    ]);
  });
});

describe('MediaMirror: the prefix is a folder, as on the page and in the CLI', () => {
  it('"media" and "/media/" both put photo.jpg at media/photo.jpg, not at mediaphoto.jpg', async () => {
    for (const prefix of ['media', '/media/', 'media/']) {
      const { uppy, done, add, claimedPaths } = setUp({ prefix });
      const id = add('photo.jpg', bytesOf(1_000, 1), 1);
      await uppy.upload();
      expect(done).toEqual([id]);
      expect(claimedPaths(), prefix).toEqual(['media/photo.jpg']);
      vi.unstubAllGlobals();
    }
  });
});
