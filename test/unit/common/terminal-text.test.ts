import { describe, expect, it } from 'vitest';
import { terminalLines, terminalText } from '../../../common/terminal-text.ts';

describe('terminalText', () => {
  it('escapes C0 and C1 controls and DEL as \\xHH', () => {
    expect(terminalText('e\x1b[2J\x1b]0;PWNED\x07.txt')).toBe('e\\x1b[2J\\x1b]0;PWNED\\x07.txt');
    expect(terminalText('a\nb\rc\td\x00e\x7ff\u0085g\u009bh')).toBe(
      'a\\x0ab\\x0dc\\x09d\\x00e\\x7ff\\x85g\\x9bh',
    );
  });

  it('escapes the bidirectional and invisible characters the path rules refuse, as \\uHHHH', () => {
    expect(terminalText('invoice\u202egpj.exe')).toBe('invoice\\u202egpj.exe');
    expect(terminalText('a\u200bb\u2028c\u2066d\ufeffe\u00adf')).toBe(
      'a\\u200bb\\u2028c\\u2066d\\ufeffe\\xadf',
    );
    expect(terminalText('tag\u{e0001}')).toBe('tag\\u{e0001}');
  });

  it('leaves ordinary text alone: accents, CJK, emoji with joiners, skin tones and flag tags', () => {
    const text = 'café naïve 日本語 한국어 مرحبا 👍🏽 👩‍💻 ❤️ 🏴󠁧󠁢󠁳󠁣󠁴󠁿 a\\x1b b/c.txt';
    expect(terminalText(text)).toBe(text);
  });

  it('terminalLines keeps the line breaks between lines and escapes the rest', () => {
    expect(terminalLines('one\x1b[1A\ntwo\x07\n')).toBe('one\\x1b[1A\ntwo\\x07\n');
  });
});
