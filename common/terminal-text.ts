/**
 * Text from outside (a file name, a path, a server's message) on its way to a terminal. A name
 * holding ESC or BEL could clear the screen, set the window title or rewrite the lines above it
 * (a fake clean summary); a bidirectional or invisible character makes it read as another name.
 * Each such character is shown as an escape (`\x1b`, `\u202e`) instead; the characters are those
 * the path rules name (contracts/path-rules.ts). Other text, accents, emoji and CJK included, is
 * left as it is. `--json` output needs none of this: JSON.stringify escapes what JSON must.
 */
import { replaceHiddenCharacters } from '../contracts/path-rules.ts';

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

function escapeChar(char: string): string {
  const code = char.codePointAt(0) ?? 0;
  if (code <= 0xff) return `\\x${hex(code, 2)}`;
  return code <= 0xffff ? `\\u${hex(code, 4)}` : `\\u{${hex(code, 1)}}`;
}

/** One line's worth of text: a line break in it is escaped too, so it cannot start a fake line. */
export function terminalText(text: string): string {
  return replaceHiddenCharacters(text, escapeChar);
}

/** Text of several lines, as the CLI prints it: each line escaped, the line breaks kept. */
export function terminalLines(text: string): string {
  return text.split('\n').map(terminalText).join('\n');
}
