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

  /** `message`: the whole sentence, for a rule that reads better to people not after "path". */
  constructor(rule: string, options: { code: PathRuleCode; message?: string }) {
    super(options.message ?? (options.code === 'invalid_path' ? `path ${rule}` : rule));
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
 * holding one displays as another (`a\u200Bb.txt` as `ab.txt`). Unicode's
 * Default_Ignorable_Code_Point (soft hyphen, zero-width space, word joiner, fillers, the byte order
 * mark, format controls, the reserved invisible ranges, ...), line and paragraph separators, the
 * interlinear annotation marks and the Egyptian hieroglyph format controls. The zero-width (non-)joiners and the variation selectors stay:
 * Persian, Indic scripts and emoji need them; so do the tag characters of a flag emoji
 * (U+1F3F4 and tags up to U+E007F, England's or Scotland's flag), dropped before the test.
 */
const INVISIBLE =
  /(?!\u200c|\u200d|[\ufe00-\ufe0f\u{e0100}-\u{e01ef}])\p{Default_Ignorable_Code_Point}|[\u2028\u2029\ufff9-\ufffb\u{13430}-\u{1343f}]/u;
const FLAG_TAG_SEQUENCE = /\u{1f3f4}[\u{e0020}-\u{e007e}]+\u{e007f}/gu;
const hasInvisible = (path: string): boolean => INVISIBLE.test(path.replace(FLAG_TAG_SEQUENCE, '\u{1f3f4}'));

// The flag first, so that its tags are taken as part of it; then the three rules' characters.
const HIDDEN_OR_FLAG = new RegExp(
  `(${FLAG_TAG_SEQUENCE.source})|${CONTROL.source}|${BIDI_CONTROL.source}|${INVISIBLE.source}`,
  'gu',
);
/**
 * Replaces each character the rules below refuse because it controls a terminal or makes a name
 * display as another (control characters, DEL, bidirectional controls, invisible characters)
 * with `replacement(char)`; a flag emoji's tag sequence stays, as the rule lets it. For text shown to
 * people that did not pass the rules: a local file name, a message from a server.
 */
export function replaceHiddenCharacters(text: string, replacement: (char: string) => string): string {
  return text.replace(HIDDEN_OR_FLAG, (match, flag: string | undefined) =>
    flag === undefined ? replacement(match) : match,
  );
}
/**
 * Look-alikes of the folder separator that Unicode's compatibility mapping (NFKC) keeps apart
 * (`a\u2215b` shows as `a/b`), and the combining overlays that draw a slash over a letter; a
 * character NFKC maps onto `/` or `\` (`\uFF0F`), or a segment it maps onto `.` or `..`
 * (`\u2024\u2024`), is caught by checkSegment.
 */
const SLASH_LOOKALIKE =
  /[\u0337\u0338\u20e5\u20eb\u2044\u2215\u2571\u2572\u27cb\u27cd\u29f5\u29f8\u29f9\u2f03\u{1f67c}\u{1f67d}]/u;
/**
 * Unicode's noncharacters: never assigned, never meant for interchange. SQS refuses U+FFFE and
 * U+FFFF in a message body too (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF),
 * and the fan-out message carries the path: such a path could be committed but never delivered.
 */
const NONCHARACTER =
  /[\ufdd0-\ufdef]|[\ufffe\uffff\u{1fffe}\u{1ffff}\u{2fffe}\u{2ffff}\u{3fffe}\u{3ffff}\u{4fffe}\u{4ffff}\u{5fffe}\u{5ffff}\u{6fffe}\u{6ffff}\u{7fffe}\u{7ffff}\u{8fffe}\u{8ffff}\u{9fffe}\u{9ffff}\u{afffe}\u{affff}\u{bfffe}\u{bffff}\u{cfffe}\u{cffff}\u{dfffe}\u{dffff}\u{efffe}\u{effff}\u{ffffe}\u{fffff}\u{10fffe}\u{10ffff}]/u;

/** Characters a path may not hold, each with the rule a refusal names. */
const CHARACTER_RULES: readonly (readonly [{ test(path: string): boolean }, string])[] = [
  [CONTROL, 'must not contain control characters'],
  [
    BIDI_CONTROL,
    'must not contain bidirectional control characters (U+202E and the like): they make a name display as another',
  ],
  [
    { test: hasInvisible },
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
  if (shown === '.' || shown === '..') {
    invalid(`must not contain look-alikes of "." or ".." (the segment "${segment}" reads as "${shown}")`);
  }
  // Character by character: U+FF0F is a slash, U+2105 (c/o) a symbol that holds one.
  for (const char of segment) {
    const folded = char.normalize('NFKC');
    if (folded === '/' || folded === '\\') {
      invalid(
        `must not contain look-alikes of "/" or "\\" ("${char}", U+${char.codePointAt(0)?.toString(16).toUpperCase()})`,
      );
    }
  }
}

const encoder = new TextEncoder();
/** Length in UTF-8 bytes (a lone surrogate counts as U+FFFD, 3 bytes). */
export const utf8Bytes = (text: string): number => encoder.encode(text).length;

/**
 * Sub-resources of a file in the API's URLs (`/v1/files/<path>/versions`). Gateways may decode
 * `%2F` before the function sees it (docs/api.md), so a file whose name is one of these could not
 * be told from the sub-resource of its folder.
 */
const API_SUB_RESOURCES: ReadonlySet<string> = new Set(['versions', 'content']);

/** The API's rule on top of the lexical ones: a nested path does not end in a sub-resource's name. */
export function checkApiName(path: string): void {
  const name = path.split('/').at(-1) ?? '';
  if (path.includes('/') && API_SUB_RESOURCES.has(name))
    invalid(`must not end in a file named "${name}" (it names a sub-resource in the API's URLs)`);
}

/**
 * Characters a new path may not hold: `%`, `?` and `#` (S3's guide lists `%` and `#` among the
 * characters to avoid in keys). An HTTP API hands the function its URL path already
 * percent-decoded (public captures; AWS's own Lambda test tool does the same), while other fronts
 * keep the encoding. With these three refused, the handler's one decoding names the same file
 * either way; with them, `100%2541.txt` would reach the function as `100%41.txt` and be read as
 * `100A.txt`, and a decoded `?` cuts the path short (docs/api.md, "The path policy"). Checked where
 * a path is first written (a claim, sync, upload), not on reads, replication or the agent: a file
 * committed under such a name before keeps being served and mirrored.
 */
export function checkNewPathName(path: string): void {
  if (/[%?#]/.test(path)) {
    // People who only picked a file see this (the page, the Uppy plugin, sync): the rule first, in
    // their words, then why; docs/api.md "The path policy" has the details.
    const rule = 'file names may not contain "%", "?" or "#"';
    throw new PathRuleError(rule, {
      code: 'invalid_path',
      message: `${rule}: rename the file (the mirror reads names from web addresses, where these characters could make a name point to another file)`,
    });
  }
}

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

/**
 * A prefix someone typed or configured, as the folder it names: leading `/` dropped and a `/` added
 * (`media` and `/media/` are both `media/`), as `sync <dir> media` stores `media/...`. The page and
 * the Uppy plugin prepend it to a file's name.
 */
export function folderPrefix(value: string): string {
  const folder = value.trim().replace(/^\/+/, '');
  return folder === '' || folder.endsWith('/') ? folder : `${folder}/`;
}
