/** How content links serve a file: its type, inline or as an attachment, and older versions. */
import { describe, expect, it } from 'vitest';
import { contentDisposition, contentUrl } from '../../../functions/core/uploads.js';

describe('how a content link serves a type', () => {
  it.each([
    ['image/png', undefined],
    ['image/JPEG', undefined],
    ['video/mp4', undefined],
    ['text/plain; charset=utf-8', undefined],
    ['application/pdf', undefined],
    // A browser would run script in these: saved, not shown.
    ['image/svg+xml', 'attachment'],
    ['text/html', 'attachment'],
    ['application/xhtml+xml', 'attachment'],
    ['text/xml', 'attachment'],
    ['application/javascript', 'attachment'],
    ['application/octet-stream', 'attachment'],
    [null, 'attachment'],
  ] as const)('%s → %s', (type, expected) => {
    expect(contentDisposition(type)).toBe(expected);
  });
});

describe('content links of older versions', () => {
  const file = (version: number, contentType: string | null, deleted = false) => ({
    path: 'a/b.svg',
    version,
    sha256: deleted ? null : 'ab'.repeat(32),
    size: deleted ? 0 : 3,
    contentType,
    deleted,
    committedAt: '2026-01-01T00:00:00.000Z',
    uploadId: `u${version}`,
  });
  const signed: unknown[] = [];
  const stats: unknown[] = [];
  const counted: string[] = [];
  /** `objectStored`: whether storage still holds the object the ledger names (HeadObject). */
  const deps = (blobStored: boolean, objectStored = true) =>
    ({
      limits: { presignTtlSeconds: 900 },
      metrics: { count: (name: string) => counted.push(name) },
      ledger: {
        getVersion: async (_p: string, v: number) => [file(1, 'image/svg+xml'), file(2, null, true)][v - 1],
        getBlob: async () => (blobStored ? { sha256: 'ab'.repeat(32), size: 3, versionId: 'v1' } : undefined),
      },
      blobs: {
        stat: async (sha256: string, versionId?: string) => {
          stats.push({ sha256, versionId });
          return objectStored ? { size: 3, etag: '"e"', versionId, sha256 } : undefined;
        },
        presignGet: async (sha256: string, ttl: number, options: unknown) => {
          signed.push({ sha256, ttl, options });
          return 'https://signed.example/';
        },
      },
    }) as unknown as Parameters<typeof contentUrl>[0];

  it('an older version: its own verified bytes, its own type (an attachment for SVG), at most 5 minutes', async () => {
    expect(await contentUrl(deps(true), 'a/b.svg', undefined, 1)).toBe('https://signed.example/');
    expect(signed.at(-1)).toEqual({
      sha256: 'ab'.repeat(32),
      ttl: 300,
      options: { versionId: 'v1', contentType: 'image/svg+xml', contentDisposition: 'attachment' },
    });
  });

  it('bytes the ledger names but storage has lost: 404 naming the version, counted, never a link to a missing object', async () => {
    const before = signed.length;
    await expect(contentUrl(deps(true, false), 'a/b.svg', undefined, 1)).rejects.toMatchObject({
      status: 404,
      field: 'version',
      message: expect.stringMatching(/"a\/b\.svg" version 1: its content is missing from storage/),
    });
    expect(stats.at(-1)).toEqual({ sha256: 'ab'.repeat(32), versionId: 'v1' });
    expect(signed.length).toBe(before);
    expect(counted).toContain('ContentMissing');
  });

  it('a deletion, a version that does not exist, bytes no longer stored, or with a target: refused', async () => {
    await expect(contentUrl(deps(true), 'a/b.svg', undefined, 2)).rejects.toMatchObject({ status: 404 });
    await expect(contentUrl(deps(true), 'a/b.svg', undefined, 3)).rejects.toMatchObject({ status: 404 });
    await expect(contentUrl(deps(false), 'a/b.svg', undefined, 1)).rejects.toMatchObject({
      status: 404,
      field: 'version',
    });
    await expect(contentUrl(deps(true), 'a/b.svg', 'eu-west-1', 1)).rejects.toMatchObject({
      status: 400,
      field: 'version',
    });
  });
});
