/**
 * The path rule every path entering the system passes (`normalizePath`): the API, the ingest,
 * replicate, the on-prem agent, the CLI and the browser. Nothing imported, so a command can check
 * a path before it loads anything else (the CLI's start stays fast). The path policy, which needs
 * the topology, is contracts/paths.ts.
 */

/** S3's limit on an object key, in UTF-8 bytes. */
export const S3_MAX_KEY_BYTES = 1024;

export type PathRuleCode = 'invalid_path' | 'path_conflict';

/**
 * A path broke a rule of the policy. The API answers it as 400 with field `path` and this
 * `code`; the agent refuses the version. `rule` is the broken rule alone, `message` the sentence.
 */
export class PathRuleError extends Error {
  override readonly name = 'PathRuleError';
  readonly field = 'path';
  readonly code: PathRuleCode;
  readonly rule: string;

  constructor(rule: string, options: { code: PathRuleCode }) {
    super(options.code === 'invalid_path' ? `path ${rule}` : rule);
    this.code = options.code;
    this.rule = rule;
  }
}

// C0 and C1 control characters and DEL: exactly what the rule forbids.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

// The bidirectional formatting controls (Unicode's Bidi_Control): a name holding one can display
// as another (`invoice\u202Egpj.exe` shows as `invoiceexe.jpg`) in a listing, a page or a folder.
const BIDI_CONTROL = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/**
 * Characters that show as nothing (or as a line break) and have no place in a file name: a name
 * holding one displays as another (`a\u200Bb.txt` as `ab.txt`). The soft hyphen, the combining
 * grapheme joiner, the Hangul and Khmer fillers, the Mongolian vowel separator, the zero-width
 * space, the word joiner and the invisible operators, the deprecated format controls, the byte
 * order mark, line and paragraph separators, interlinear annotation marks and the tag characters.
 * The zero-width (non-)joiners and the variation selectors stay: Persian, Indic scripts and
 * emoji need them.
 */
// U+034F (a combining character) apart: in a class it would read as joined to its neighbour.
const INVISIBLE =
  /\u034f|[\u00ad\u115f\u1160\u17b4\u17b5\u180e\u200b\u2028\u2029\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb\u{e0000}-\u{e007f}]/u;
/**
 * Look-alikes of the folder separator that Unicode's compatibility mapping (NFKC) keeps apart
 * (`a\u2215b` shows as `a/b`); those it maps onto `/`, `\` or dots (`\uFF0F`, `\u2024\u2024`) are
 * caught by comparing each segment's NFKC form.
 */
const SLASH_LOOKALIKE = /[\u2044\u2215\u2571\u2572\u29f5\u29f8\u29f9]/u;
/**
 * Unicode's noncharacters: never assigned, never meant for interchange. SQS refuses U+FFFE and
 * U+FFFF in a message body too (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF),
 * and the fan-out message carries the path: such a path could be committed but never delivered.
 */
const NONCHARACTER =
  /[\ufdd0-\ufdef]|[\ufffe\uffff\u{1fffe}\u{1ffff}\u{2fffe}\u{2ffff}\u{3fffe}\u{3ffff}\u{4fffe}\u{4ffff}\u{5fffe}\u{5ffff}\u{6fffe}\u{6ffff}\u{7fffe}\u{7ffff}\u{8fffe}\u{8ffff}\u{9fffe}\u{9ffff}\u{afffe}\u{affff}\u{bfffe}\u{bffff}\u{cfffe}\u{cffff}\u{dfffe}\u{dffff}\u{efffe}\u{effff}\u{ffffe}\u{fffff}\u{10fffe}\u{10ffff}]/u;

/** Characters a path may not hold, each with the rule a refusal names. */
const CHARACTER_RULES: readonly (readonly [RegExp, string])[] = [
  [CONTROL, 'must not contain control characters'],
  [
    BIDI_CONTROL,
    'must not contain bidirectional control characters (U+202E and the like): they make a name display as another',
  ],
  [
    INVISIBLE,
    'must not contain invisible characters (zero-width space, U+2028 and the like): they make a name display as another',
  ],
  [
    NONCHARACTER,
    'must not contain Unicode noncharacters (U+FDD0 to U+FDEF, U+FFFE, U+FFFF and the like; queues cannot carry them)',
  ],
  [SLASH_LOOKALIKE, 'must not contain look-alikes of "/" (U+2215 and the like); use "/" between folders'],
  [/\\/, 'must not contain backslashes; use "/" between folders'],
];

function checkSegment(segment: string): void {
  if (segment === '') invalid('must not contain empty segments ("//" or a trailing "/")');
  if (segment === '.' || segment === '..') invalid('must not contain "." or ".." segments');
  const shown = segment.normalize('NFKC');
  if (shown === '.' || shown === '..' || /[/\\]/.test(shown)) {
    invalid(
      `must not contain look-alikes of "/", "\\", "." or ".." (the segment "${segment}" reads as "${shown}")`,
    );
  }
}

const encoder = new TextEncoder();
/** Length in UTF-8 bytes (a lone surrogate counts as U+FFFD, 3 bytes). */
export const utf8Bytes = (text: string): number => encoder.encode(text).length;

export function invalid(rule: string): never {
  throw new PathRuleError(rule, { code: 'invalid_path' });
}

export function conflict(rule: string): never {
  throw new PathRuleError(rule, { code: 'path_conflict' });
}

/**
 * Checks a client's path and returns it in NFC.
 * @param maxPrefixBytes the longest key prefix of any target, so that prefix + path fits S3's key limit.
 */
export function normalizePath(raw: unknown, maxPrefixBytes = 0): string {
  if (typeof raw !== 'string') invalid('must be a string');
  if (!raw.isWellFormed()) invalid('must be valid UTF-8 (it has a lone surrogate)');
  const path = raw.normalize('NFC');
  if (path.length === 0) invalid('must not be empty');
  for (const [pattern, rule] of CHARACTER_RULES) if (pattern.test(path)) invalid(rule);
  if (path.startsWith('/')) invalid('must be relative (no leading "/")');
  for (const segment of path.split('/')) checkSegment(segment);
  const limit = S3_MAX_KEY_BYTES - maxPrefixBytes;
  if (utf8Bytes(path) > limit) invalid(`must be at most ${limit} bytes in UTF-8`);
  return path;
}
