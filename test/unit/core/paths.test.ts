import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizePath, PathRuleError, S3_MAX_KEY_BYTES } from '../../../contracts/paths.ts';
import { deduplicationId, messageGroupId, shardOf } from '../../../functions/core/shards.js';

/** Reads as a separator or a dot segment once compatibility forms are folded (`\uFF0F`, `\u2100`). */
const readsAsSeparator = (s: string) =>
  /[/\\]/.test(s.normalize('NFKC')) || ['.', '..'].includes(s.normalize('NFKC'));
const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter(
  (s) =>
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the generator must avoid exactly the forbidden characters.
    !/[/\\\u0000-\u001f\u007f-\u009f]/.test(s) &&
    // Invisible and never-assigned characters, and separator look-alikes, are refused (tested apart);
    // in the NFC form the rule reads (U+2ADC decomposes to hold U+0338).
    !/\u0337|\u0338|\u20e5|\u20eb|[\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}\u2028\u2029\u2044\u2215\u2571\u2572\u27cb\u27cd\u29f5\u29f8\u29f9\u2f03\ufff9-\ufffb\u{13430}-\u{1343f}\u{1f67c}\u{1f67d}]/u.test(
      s.normalize('NFC'),
    ) &&
    !readsAsSeparator(s) &&
    s !== '.' &&
    s !== '..' &&
    s.normalize('NFC').length > 0,
);
const validPath = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));

describe('normalizePath', () => {
  it('accepts relative paths of ordinary segments and returns them in NFC (property)', () => {
    fc.assert(
      fc.property(validPath, (path) => {
        const out = normalizePath(path);
        expect(out).toBe(path.normalize('NFC'));
        expect(normalizePath(out)).toBe(out); // idempotent
      }),
    );
  });

  it('turns decomposed accents into composed ones', () => {
    expect(normalizePath('cafe\u0301/photo.jpg')).toBe('caf\u00e9/photo.jpg');
  });

  it('rejects any path with a "." or ".." segment, wherever it stands (property)', () => {
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 4 }),
        fc.array(segment, { maxLength: 4 }),
        fc.constantFrom('.', '..'),
        (a, b, dots) => {
          expect(() => normalizePath([...a, dots, ...b].join('/'))).toThrow(PathRuleError);
        },
      ),
    );
  });

  it.each([
    ['', 'empty'],
    ['/abs.png', 'relative'],
    ['a//b', 'empty segments'],
    ['a/b/', 'empty segments'],
    ['a\\b', 'backslashes'],
    ['a\u0007b', 'control'],
    ['a\u0085b', 'control'],
    ['invoice\u202egpj.exe', 'bidirectional'],
    ['a\u2066b', 'bidirectional'],
    ['a\u200fb', 'bidirectional'],
    ['a\u061cb', 'bidirectional'],
    ['a\u200bb.txt', 'invisible'],
    ['a\u2060b.txt', 'invisible'],
    ['a\ufeffb.txt', 'invisible'],
    ['a\u00adb.txt', 'invisible'],
    ['a\u034fb.txt', 'invisible'],
    ['a\u3164b.txt', 'invisible'],
    ['a\u2028b.txt', 'invisible'],
    ['a\u{e0041}b.txt', 'invisible'],
    ['a\ufdd0b.txt', 'noncharacters'],
    ['a\u{1fffe}b.txt', 'noncharacters'],
    ['a\u2215b.txt', 'look-alikes of "/"'],
    ['a\u2044b.txt', 'look-alikes of "/"'],
    ['a\uff0fb.txt', 'look-alikes'],
    ['a/\u2024\u2024/b.txt', 'look-alikes'],
    ['a/\u2025/b.txt', 'look-alikes'],
    ['a/\uff0e/b.txt', 'look-alikes'],
    ['a\uff3cb.txt', 'look-alikes'],
    ['ab\u{1d173}.txt', 'invisible'],
    ['a\u{e0fff}b.txt', 'invisible'],
    ['a\ufff0b.txt', 'invisible'],
    ['a\u{13430}b.txt', 'invisible'],
    ['a\u{e0067}b.txt', 'invisible'],
    ['docs\u27cbevil.pdf', 'look-alikes of "/"'],
    ['a\u0338b.txt', 'look-alikes of "/"'],
    ['\u65e5\u672c\u8a9e\uff0f\u8cc7\u6599.txt', 'look-alikes of "/"'],
    ['bad\ud800', 'UTF-8'],
  ])('rejects %j naming the rule (%s)', (path, rule) => {
    try {
      normalizePath(path);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(PathRuleError);
      expect((error as PathRuleError).field).toBe('path');
      expect((error as PathRuleError).message).toContain(rule);
    }
  });

  it('keeps the joiners, variation selectors and flag tags that scripts and emoji need, ellipses, and symbols that merely hold a slash', () => {
    for (const name of [
      '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt',
      'family-\u{1f468}\u200d\u{1f469}.png',
      'love-\u2764\ufe0f.jpg',
      'draft\u2026final.pdf',
      '\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f} trip.jpg',
      'Letter \u2105 John.pdf',
      'a\u2260b.txt',
    ]) {
      expect(normalizePath(name)).toBe(name.normalize('NFC'));
    }
  });

  it('keeps prefix + path within S3 key length, counted in UTF-8 bytes', () => {
    const fits = 'é'.repeat((S3_MAX_KEY_BYTES - 10) / 2);
    expect(normalizePath(fits, 10)).toBe(fits);
    expect(() => normalizePath(`${fits}x`, 10)).toThrow(/at most 1014 bytes/);
  });
});

describe('ids derived from paths', () => {
  it('shards are stable and in range (property)', () => {
    fc.assert(
      fc.property(validPath, fc.integer({ min: 1, max: 64 }), (path, k) => {
        const s = shardOf(path, k);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThan(k);
        expect(shardOf(path, k)).toBe(s);
      }),
    );
  });

  it('FIFO group and dedup ids fit SQS limits (128 ASCII) for any path and version (property)', () => {
    fc.assert(
      fc.property(validPath, fc.integer({ min: 1, max: 2 ** 40 }), (path, version) => {
        for (const id of [messageGroupId(path), deduplicationId(path, version)]) {
          expect(id).toMatch(/^[0-9a-f]{64}$/);
        }
        expect(deduplicationId(path, version)).not.toBe(deduplicationId(path, version + 1));
      }),
    );
  });
});
