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

  it('a pathOf that replaces the three characters (docs/browser.md) sends the file', async () => {
    const pathOf = (file: { name?: string }) => `docs/${(file.name ?? '').replace(/[%?#]/g, '_')}`;
    const { requests, errors } = await uploadOne('Invoice #12.pdf', { pathOf });
    // The claim goes out under the mapped name (this test's API refuses it: no stack here).
    expect(requests.some((r) => r.startsWith(`POST ${api}/v1/uploads`))).toBe(true);
    expect(errors).not.toContainEqual(expect.stringMatching(/may not contain/));
  });
});
