/**
 * Logical file paths: what `/media` used to hold, and the key a target stores
 * a file under. Every path entering the system passes through `normalizePath`,
 * and the path policy below decides what every configured target can hold.
 * The API, the ingest, replicate and the on-prem agent all apply these same rules;
 * this module needs nothing outside contracts/ so that each of them (and the browser) can.
 */
import { targetSelects } from './topology.ts';

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
  [NONCHARACTER, 'must not contain Unicode noncharacters (U+FDD0, U+FFFE and the like)'],
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
const utf8Bytes = (text: string): number => encoder.encode(text).length;

function invalid(rule: string): never {
  throw new PathRuleError(rule, { code: 'invalid_path' });
}

function conflict(rule: string): never {
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

// ---------------------------------------------------------------- the path policy

/** The on-prem agent's state folder at the top of its mirror folder: never a mirrored path. */
export const AGENT_STATE_DIR = '.media-mirror';
/** Marks the agent's temp files: `.<name>.mirror-tmp-<random>`. */
export const AGENT_TEMP_MARKER = '.mirror-tmp-';
/** NAME_MAX of Linux file systems (ext4, xfs), in bytes. */
export const FILE_NAME_MAX_BYTES = 255;
/**
 * Sub-resources of a file in the API's URLs (`/v1/files/<path>/versions`). Gateways may decode
 * `%2F` before the function sees it (docs/api.md), so a file whose name is one of these could not
 * be told from the sub-resource of its folder: such names are refused at the door.
 */
const API_SUB_RESOURCES: ReadonlySet<string> = new Set(['versions', 'content']);

export function isAgentTempName(name: string): boolean {
  return name.startsWith('.') && name.includes(AGENT_TEMP_MARKER);
}

/** What the policy needs to know of a target. */
export interface PolicyTarget {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  readonly pathPrefix?: string | undefined;
  /** S3 targets: the key prefix the path is stored under. */
  readonly keyPrefix?: string | undefined;
}

/** What the policy asks the ledger for the folder/file rule (pull targets only). */
export interface PathOccupancy {
  /** Those of `paths` that hold a live (not deleted) file. */
  liveFilesAmong(paths: readonly string[]): Promise<string[]>;
  /** Whether any live file lies under `folder/`. */
  hasLiveFileUnder(folder: string): Promise<boolean>;
}

/** The folders a path lies in, outermost first: `a/b/c` → `a`, `a/b`. */
export function ancestorsOf(path: string): string[] {
  const segments = path.split('/');
  return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

/** Rules a pull target's file system imposes on a path (lexical: no state). */
function checkFileSystemPath(path: string): void {
  const segments = path.split('/');
  if (segments[0] === AGENT_STATE_DIR)
    invalid(`must not start with "${AGENT_STATE_DIR}/" (the agent's state)`);
  for (const segment of segments) {
    if (isAgentTempName(segment)) invalid(`must not use the agent's temp-file names ("${segment}")`);
    if (utf8Bytes(segment) > FILE_NAME_MAX_BYTES)
      invalid(`must not have a name longer than ${FILE_NAME_MAX_BYTES} bytes in UTF-8`);
  }
}

/**
 * The one statement of what a path may be, for every configured target. The API admits only what
 * every target that selects the path can hold; the ingest, replicate and the agent check the same
 * rules again on what reaches them, since a message is a hint, not a fact.
 */
export class PathPolicy {
  constructor(private readonly targets: readonly PolicyTarget[]) {}

  /** The targets that take this path. */
  selecting(path: string): PolicyTarget[] {
    return this.targets.filter((t) => targetSelects(t, path));
  }

  /** Lexical rules of every target that takes the path; returns the path in NFC. Throws PathRuleError. */
  check(raw: unknown): string {
    const path = normalizePath(raw);
    for (const target of this.selecting(path)) {
      if (target.kind === 'pull') checkFileSystemPath(path);
      const prefixBytes = utf8Bytes(target.keyPrefix ?? '');
      if (utf8Bytes(path) + prefixBytes > S3_MAX_KEY_BYTES)
        invalid(`must be at most ${S3_MAX_KEY_BYTES - prefixBytes} bytes in UTF-8 (target "${target.id}")`);
    }
    return path;
  }

  /** What the API admits: the lexical rules plus names its URLs reserve. */
  admit(raw: unknown): string {
    const path = this.check(raw);
    const name = path.split('/').at(-1) ?? '';
    if (path.includes('/') && API_SUB_RESOURCES.has(name))
      invalid(`must not end in a file named "${name}" (it names a sub-resource in the API's URLs)`);
    return path;
  }

  /**
   * The file/folder rule of file-system targets: a path cannot be a file where another live path
   * needs a folder (`a` after `a/b`), nor lie under a live file (`a/b` after `a`). Only paths some
   * pull target takes are checked. Refuses with PathRuleError `path_conflict` (the API's 400).
   *
   * With `deferFolders: n`, up to n of the path's folders are not read here but returned: the
   * caller's commit checks them in its own write (the ingest's transaction), atomically with it.
   */
  async checkOccupancy(
    path: string,
    ledger: PathOccupancy,
    options: { deferFolders?: number } = {},
  ): Promise<string[]> {
    const pulls = this.selecting(path).filter((t) => t.kind === 'pull');
    if (pulls.length === 0) return [];
    const folders = ancestorsOf(path).filter((folder) => pulls.some((t) => targetSelects(t, folder)));
    const deferred = folders.slice(0, Math.max(0, options.deferFolders ?? 0));
    const read = folders.slice(deferred.length);
    const [files, underneath] = await Promise.all([
      read.length > 0 ? ledger.liveFilesAmong(read) : Promise.resolve([]),
      ledger.hasLiveFileUnder(path),
    ]);
    const file = files[0];
    if (file !== undefined) throw underFileError(file);
    if (underneath)
      conflict(`path is a folder of other files (a pull target cannot hold "${path}" as a file too)`);
    return deferred;
  }
}

/** The folder/file rule's refusal of a path that lies under the live file `file`. */
export function underFileError(file: string): PathRuleError {
  return new PathRuleError(`path lies under "${file}", which is a file (a pull target cannot hold both)`, {
    code: 'path_conflict',
  });
}
