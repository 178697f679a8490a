/** The browser client's claim carries an Idempotency-Key, the same on every retry of that claim. */
import { afterEach, describe, expect, it } from 'vitest';
import { uploadFile } from '../../../web/client/upload-file.ts';
import { blobOf, bytesOf, claimRequests, contractViolations, FakeMirror, uploadOptions } from './fake-api.ts';

const options = uploadOptions;
const claims = claimRequests;

// Every answer the fake gave matched the API's contract (a drifted fake fails here).
afterEach(() => {
  expect(contractViolations.splice(0)).toEqual([]);
});

describe('Idempotency-Key on the claim', () => {
  it('every retry of the claim carries the same key; another upload another key', async () => {
    const mirror = new FakeMirror();
    let failures = 2;
    mirror.interceptors.push((r) =>
      r.method === 'POST' && new URL(r.url).pathname === '/v1/uploads' && failures-- > 0
        ? new Response('{"message":"Service Unavailable"}', { status: 503 })
        : undefined,
    );
    await uploadFile(blobOf(bytesOf(10)), options(mirror));
    const keys = claims(mirror).map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f-]{32,36}$/);
    expect(new Set(keys).size).toBe(1);

    await uploadFile(blobOf(bytesOf(11)), options(mirror, { path: 'media/other.bin' }));
    expect(claims(mirror).at(-1)?.headers['idempotency-key']).not.toBe(keys[0]);
  });

  it('a caller retrying the whole upload passes its key again', async () => {
    const mirror = new FakeMirror();
    await uploadFile(blobOf(bytesOf(10)), options(mirror, { idempotencyKey: 'my-upload-1' }));
    expect(claims(mirror).map((r) => r.headers['idempotency-key'])).toEqual(['my-upload-1']);
  });

  it('"still in progress" (409 idempotency_in_progress) is waited out and retried, not shown as an error', async () => {
    const mirror = new FakeMirror();
    let busy = 1;
    mirror.interceptors.push((r) =>
      r.method === 'POST' && new URL(r.url).pathname === '/v1/uploads' && busy-- > 0
        ? new Response(
            JSON.stringify({
              error: { code: 'idempotency_in_progress', message: 'in progress', field: 'Idempotency-Key' },
            }),
            { status: 409, headers: { 'content-type': 'application/json', 'retry-after': '0' } },
          )
        : undefined,
    );
    const result = await uploadFile(blobOf(bytesOf(10)), options(mirror));
    expect(result.status).toBe('committed');
    expect(claims(mirror)).toHaveLength(2);
  });
});
