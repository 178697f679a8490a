/**
 * The Uppy plugin's connection options (web/uppy): a bearer token or a request signer (an API
 * behind IAM), exactly one. The upload itself is driven in Chromium by test/browser/uppy.test.ts.
 */
import Uppy from '@uppy/core';
import { describe, expect, it } from 'vitest';
import type { RequestSigner } from '../../../web/client/index.ts';
import MediaMirror from '../../../web/uppy/index.ts';

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
