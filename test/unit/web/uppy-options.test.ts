/**
 * The Uppy plugin's connection options (web/uppy): a bearer token or a request signer (an API
 * behind IAM), exactly one; and the names it refuses before anything is hashed or claimed. The
 * upload itself is driven in Chromium by test/browser/uppy.test.ts.
 */
import Uppy from '@uppy/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RequestSigner } from '../../../web/client/index.ts';
import MediaMirror, { type MediaMirrorOptions } from '../../../web/uppy/index.ts';

const sign: RequestSigner = async () => ({ authorization: 'AWS4-HMAC-SHA256 Credential=x' });
const api = 'https://api.example.com';

describe('MediaMirror options', () => {
  it('takes a token or a signer', () => {
    expect(() => new Uppy().use(MediaMirror, { api, token: 'secret' })).not.toThrow();
    expect(() => new Uppy().use(MediaMirror, { api, sign })).not.toThrow();
  });

  it('refuses neither, both, or no API URL, naming what it needs', () => {
    const needs = /MediaMirror needs `api` \(the API URL\) and one of `token` or `sign`/;
    expect(() => new Uppy().use(MediaMirror, { api })).toThrow(needs);
    expect(() => new Uppy().use(MediaMirror, { api, token: 'secret', sign })).toThrow(needs);
    expect(() => new Uppy().use(MediaMirror, { api: '', token: 'secret' })).toThrow(needs);
  });
});

describe('MediaMirror: names the API refuses (%, ? and #)', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  /** Uploads one file through the plugin; every request the client would make is recorded. */
  async function uploadOne(name: string, options: Partial<MediaMirrorOptions> = {}) {
    const requests: string[] = [];
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init?: RequestInit) => {
      requests.push(`${init?.method ?? 'GET'} ${String(input)}`);
      return new Response(
        JSON.stringify({ error: { code: 'unavailable', message: 'no API in this test' } }),
        {
          status: 400,
        },
      );
    });
    const uppy = new Uppy().use(MediaMirror, {
      api,
      token: 'secret',
      workerUrl: null,
      retries: 0,
      ...options,
    });
    const errors: string[] = [];
    const hashing: string[] = [];
    uppy.on('upload-error', (_file, error) => errors.push(error.message));
    uppy.on('preprocess-progress', () => hashing.push(name));
    uppy.addFile({ name, type: 'image/jpeg', data: new Blob(['bytes']) });
    await uppy.upload();
    return { requests, errors, hashing };
  }

  it('refuses "Invoice #12.pdf" and "50% off.jpg" before hashing or claiming, with the rule in words', async () => {
    for (const name of ['Invoice #12.pdf', '50% off.jpg', 'why?.jpg']) {
      const { requests, errors, hashing } = await uploadOne(name);
      expect(requests).toEqual([]);
      expect(hashing).toEqual([]);
      expect(errors).toEqual([
        expect.stringMatching(/^file names may not contain "%", "\?" or "#": rename the file/),
      ]);
    }
  });

  it('refuses a name the path rules refuse (a bidirectional control, a zero-width space) before hashing or claiming, as the CLI does (probe webui)', async () => {
    const refusals: [string, RegExp][] = [
      ['inv\u202Egnp.exe', /^path must not contain bidirectional control characters/],
      ['clip\u200B.mp4', /^path must not contain invisible characters/],
      ['a\u2215b.jpg', /^path must not contain look-alikes of "\/"/],
    ];
    for (const [name, rule] of refusals) {
      const { requests, errors, hashing } = await uploadOne(name);
      // Before, the whole file was hashed, then the claim was refused (400 invalid_path).
      expect(requests, name).toEqual([]);
      expect(hashing, name).toEqual([]);
      expect(errors, name).toEqual([expect.stringMatching(rule)]);
    }
  });

  it('a pathOf that replaces the three characters (docs/browser.md) sends the file', async () => {
    const pathOf = (file: { name?: string }) => `docs/${(file.name ?? '').replace(/[%?#]/g, '_')}`;
    const { requests, errors } = await uploadOne('Invoice #12.pdf', { pathOf });
    // The claim goes out under the mapped name (this test's API refuses it: no stack here).
    expect(requests.some((r) => r.startsWith(`POST ${api}/v1/uploads`))).toBe(true);
    expect(errors).not.toContainEqual(expect.stringMatching(/may not contain/));
  });
});

describe('MediaMirror: ifVersionOf (write only over the version the editor saw)', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("sends each file's ifVersion in its claim; a head that moved on fails the file with 409 version_conflict", async () => {
    const claims: unknown[] = [];
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init?: RequestInit) => {
      if (String(input).startsWith(`${api}/v1/uploads`) && init?.method === 'POST') {
        claims.push(JSON.parse(String(init.body)));
      }
      const error = { code: 'version_conflict', message: 'the head is version 4, not 3', field: 'ifVersion' };
      return new Response(JSON.stringify({ error }), { status: 409 });
    });
    const uppy = new Uppy().use(MediaMirror, {
      api,
      token: 'secret',
      workerUrl: null,
      retries: 0,
      ifVersionOf: (file) => (file.meta as { headVersion?: number }).headVersion,
    });
    const errors: string[] = [];
    uppy.on('upload-error', (_file, error) => errors.push(error.message));
    uppy.addFile({
      name: 'edited.jpg',
      type: 'image/jpeg',
      data: new Blob(['bytes']),
      meta: { headVersion: 3 },
    });
    uppy.addFile({ name: 'new.jpg', type: 'image/jpeg', data: new Blob(['other']) });
    await uppy.upload();
    expect(claims).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'edited.jpg', ifVersion: 3 }),
        expect.objectContaining({ path: 'new.jpg' }),
      ]),
    );
    expect(claims.find((c) => (c as { path: string }).path === 'new.jpg')).not.toHaveProperty('ifVersion');
    expect(errors).toContainEqual(expect.stringMatching(/the head is version 4, not 3/));
  });
});
