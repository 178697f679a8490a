/** A part's ETag as uploaders report it: S3's quoted form, or stripped of its quotes (Uppy 6). */
import { describe, expect, it } from 'vitest';
import { canonicalEtag, partReportSchema } from '../../../contracts/api.ts';

const report = (etag: string) => partReportSchema.safeParse({ size: 1, sha256: 'a'.repeat(64), etag });

describe('part ETags', () => {
  it('reads the quoted and the stripped form as the same quoted ETag', () => {
    const quoted = '"5f363e0e58a95f06cbe9bbc662c5dfb6"';
    expect(report(quoted)).toMatchObject({ success: true, data: { etag: quoted } });
    expect(report(quoted.replace(/"/g, ''))).toMatchObject({ success: true, data: { etag: quoted } });
    // A multipart-style ETag (`-N`) and other stores' opaque tags keep their characters.
    expect(report('abc-12')).toMatchObject({ success: true, data: { etag: '"abc-12"' } });
    expect(canonicalEtag('"x"')).toBe(canonicalEtag('x'));
  });

  it('refuses what is no ETag storage answers, naming the rule', () => {
    for (const bad of [
      '',
      '""',
      '"abc',
      'abc"',
      'a"b',
      'a b',
      'W/"abc"',
      'tab\there',
      'é',
      'x'.repeat(201),
    ]) {
      const parsed = report(bad);
      expect(parsed.success, bad).toBe(false);
      expect(parsed.error?.issues[0]?.path, bad).toEqual(['etag']);
    }
    expect(report('a b').error?.issues[0]?.message).toMatch(/with or without its quotes/);
  });
});
