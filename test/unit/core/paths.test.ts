import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizePath, PathRuleError, S3_MAX_KEY_BYTES } from '../../../contracts/paths.ts';
import { deduplicationId, messageGroupId, shardOf } from '../../../functions/core/shards.js';

const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter(
  (s) =>
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the generator must avoid exactly the forbidden characters.
    !/[/\\\u0000-\u001f\u007f-\u009f]/.test(s) && s !== '.' && s !== '..' && s.normalize('NFC').length > 0,
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
