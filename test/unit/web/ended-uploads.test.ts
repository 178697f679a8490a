/**
 * An upload that ends while a client still works on it: a Retry under the same key after its
 * commit or its rejection, and two clients sharing one resumed multipart upload (one cancels, or
 * the other completes it first). The client settles by the upload's state, never by the step's
 * error, and never aborts an upload it only joined.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { uploadFile } from '../../../web/client/upload-file.ts';
import {
  blobOf,
  bytesOf,
  claimRequests,
  contractViolations,
  FakeMirror,
  MiB,
  uploadOptions,
} from './fake-api.ts';

const options = (mirror: FakeMirror, extra: Partial<Parameters<typeof uploadFile>[1]> = {}) =>
  uploadOptions(mirror, { retries: 1, ...extra });
const pathOf = (url: string) => new URL(url).pathname;
const claims = claimRequests;

afterEach(() => {
  expect(contractViolations.splice(0)).toEqual([]);
});

describe('a Retry under the same Idempotency-Key', () => {
  it('after a commit whose answer was lost: committed at that version, nothing sent or committed again', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(1000);
    let offline = true;
    // The network gives out while the client waits for the verdict; the ingest commits anyway.
    mirror.interceptors.push((r) => {
      if (offline && r.method === 'GET' && pathOf(r.url).startsWith('/v1/uploads/')) {
        throw new TypeError('fetch failed');
      }
      return undefined;
    });
    await expect(uploadFile(blobOf(bytes), options(mirror, { idempotencyKey: 'K' }))).rejects.toThrow(
      /fetch failed|reach/,
    );
    offline = false;
    // The ingest commits it meanwhile (the fake's ingest runs on a status read).
    const [uploadId] = [...mirror.uploads.keys()];
    await mirror.fetch(`https://api.test/v1/uploads/${uploadId}`, {
      headers: { authorization: 'Bearer secret' },
    });
    expect(mirror.uploads.get(uploadId as string)?.status).toBe('committed');
    const puts = mirror.storageRequests().length;
    const again = await uploadFile(blobOf(bytes), options(mirror, { idempotencyKey: 'K' }));
    expect(again).toMatchObject({ status: 'committed', version: 1 });
    expect(mirror.versions.get('media/file.bin')).toBe(1);
    expect(mirror.storageRequests()).toHaveLength(puts);
  });

  it('after a rejection: the file is claimed again under a new key (given to the caller) and committed', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(1000);
    const first = new AbortController();
    // The first attempt is cancelled after its claim: the API ends that upload `rejected: aborted`.
    mirror.interceptors.push((r) => {
      if (r.method === 'POST' && pathOf(r.url).endsWith('/proof') && !first.signal.aborted) {
        first.abort(new Error('cancelled'));
      }
      return undefined;
    });
    await expect(
      uploadFile(blobOf(bytes), options(mirror, { idempotencyKey: 'K', signal: first.signal })),
    ).rejects.toThrow(/cancelled/);
    expect([...mirror.uploads.values()].map((u) => u.status)).toEqual(['rejected']);
    const keys: string[] = [];
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, { idempotencyKey: 'K', onIdempotencyKey: (k) => keys.push(k) }),
    );
    expect(result).toMatchObject({ status: 'committed', version: 1 });
    expect(keys).toHaveLength(1);
    expect(keys[0]).not.toBe('K');
    expect(claims(mirror).map((r) => r.headers['idempotency-key'])).toEqual(['K', 'K', keys[0]]);
  });
});

describe('two clients on one resumed multipart upload', () => {
  const bytes = bytesOf(11 * MiB);
  /** Another browser's upload of the same file to the same path, one part stored. */
  function shared() {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const theirs = mirror.seedMultipart({
      path: 'media/file.bin',
      bytes,
      parts: { 1: bytes.subarray(0, 5 * MiB) },
    });
    return { mirror, theirs };
  }
  const partPuts = (mirror: FakeMirror) =>
    mirror.storageRequests().filter((r) => new URL(r.url).searchParams.has('partNumber'));

  it('cancelling here leaves the upload to the client that started it: no DELETE', async () => {
    const { mirror, theirs } = shared();
    const controller = new AbortController();
    mirror.interceptors.push((r) => {
      if (new URL(r.url).searchParams.has('partNumber')) controller.abort(new Error('user cancelled'));
      return undefined;
    });
    await expect(
      uploadFile(blobOf(bytes), options(mirror, { signal: controller.signal, proof: false })),
    ).rejects.toThrow(/user cancelled/);
    expect(mirror.apiRequests('DELETE')).toEqual([]);
    expect(mirror.uploads.get(theirs)?.status).toBe('pending');
  });

  it('the other client completes it first: committed here too, not a storage error', async () => {
    const { mirror, theirs } = shared();
    mirror.interceptors.push((r) => {
      const upload = mirror.uploads.get(theirs);
      if (new URL(r.url).searchParams.has('partNumber') && upload?.status === 'pending') {
        upload.status = 'committed';
        upload.version = 1;
        mirror.versions.set('media/file.bin', 1);
      }
      return undefined;
    });
    const result = await uploadFile(blobOf(bytes), options(mirror, { proof: false }));
    expect(result).toMatchObject({ status: 'committed', version: 1, uploadId: theirs, resumed: true });
    expect(mirror.versions.get('media/file.bin')).toBe(1);
  });

  it('the other client completes it while this one still sends: its verdict is waited for, then committed here too', async () => {
    const { mirror, theirs } = shared();
    mirror.interceptors.push((r) => {
      const upload = mirror.uploads.get(theirs);
      if (new URL(r.url).searchParams.has('partNumber') && upload?.multipart && !upload.multipart.completed) {
        // Completed at storage by the other client; the ingest needs a few polls to verify it.
        upload.multipart.completed = true;
        upload.body = bytes;
        upload.verifyingPolls = 3;
      }
      return undefined;
    });
    const result = await uploadFile(blobOf(bytes), options(mirror, { proof: false }));
    expect(result).toMatchObject({ status: 'committed', version: 1, uploadId: theirs });
    expect(mirror.versions.get('media/file.bin')).toBe(1);
  });

  it('the other client cancels it: claimed again (a new upload) and committed', async () => {
    const { mirror, theirs } = shared();
    mirror.interceptors.push(async (r) => {
      if (new URL(r.url).searchParams.get('uploadId') === theirs) {
        // Their cancel arrives while this client sends its parts.
        await mirror.fetch(`https://api.test/v1/uploads/${theirs}`, {
          method: 'DELETE',
          headers: { authorization: 'Bearer secret' },
        });
      }
      return undefined;
    });
    const result = await uploadFile(blobOf(bytes), options(mirror, { proof: false }));
    expect(mirror.uploads.get(theirs)).toMatchObject({ status: 'rejected', reason: 'aborted' });
    expect(result.status).toBe('committed');
    expect(result.uploadId).not.toBe(theirs);
    expect(result.resumed).toBe(false);
    expect(partPuts(mirror).length).toBeGreaterThanOrEqual(3);
    // Deep equality of 11 MiB element by element takes minutes: compared as one buffer.
    expect(Buffer.compare(Buffer.from(mirror.blobs.get(result.sha256) ?? []), Buffer.from(bytes))).toBe(0);
    expect(mirror.versions.get('media/file.bin')).toBe(1);
  });

  it('the other client cancels it once this one has sent every part: claimed again and committed, not "rejected: aborted"', async () => {
    const { mirror, theirs } = shared();
    mirror.interceptors.push(async (r) => {
      if (r.method === 'POST' && pathOf(r.url) === `/v1/uploads/${theirs}/complete`) {
        // Their cancel lands just before this client's complete.
        await mirror.fetch(`https://api.test/v1/uploads/${theirs}`, {
          method: 'DELETE',
          headers: { authorization: 'Bearer secret' },
        });
      }
      return undefined;
    });
    const keys: string[] = [];
    const phases: string[] = [];
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, {
        proof: false,
        onIdempotencyKey: (key) => keys.push(key),
        onProgress: ({ phase }) => phases.push(phase),
      }),
    );
    // The file goes on: it never reads "rejected" on the way (a page would show it failed).
    expect(phases).not.toContain('rejected');
    expect(phases.at(-1)).toBe('committed');
    expect(mirror.uploads.get(theirs)).toMatchObject({ status: 'rejected', reason: 'aborted' });
    expect(result).toMatchObject({ status: 'committed', version: 1, resumed: false });
    expect(result.uploadId).not.toBe(theirs);
    expect(keys).toHaveLength(1);
    expect(mirror.versions.get('media/file.bin')).toBe(1);
  });
});
