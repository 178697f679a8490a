/**
 * Logical file paths: what `/media` used to hold, and the key a target stores
 * a file under. Every path entering the system passes through `normalizePath`,
 * and the path policy below decides what every configured target can hold.
 * The API, the ingest, replicate and the on-prem agent all apply these same rules;
 * this module needs nothing outside contracts/ so that each of them (and the browser) can.
 */
import {
  checkApiName,
  checkNewPathName,
  invalid,
  normalizePath,
  PathRuleError,
  S3_MAX_KEY_BYTES,
  utf8Bytes,
} from './path-rules.ts';
import { targetSelects } from './topology.ts';

export {
  normalizePath,
  type PathRuleCode,
  PathRuleError,
  S3_MAX_KEY_BYTES,
} from './path-rules.ts';

// ---------------------------------------------------------------- the path policy

/** The on-prem agent's state folder at the top of its mirror folder: never a mirrored path. */
export const AGENT_STATE_DIR = '.media-mirror';
/** Marks the agent's temp files: `.<name>.mirror-tmp-<random>`. */
export const AGENT_TEMP_MARKER = '.mirror-tmp-';
/**
 * The most folders of a path a pull target may take: a commit checks and counts each of them in its
 * one transaction (two items each; DynamoDB's transaction takes 100 items, docs/design-notes.md).
 * A deeper path is refused at its claim, so no folder of a file goes unchecked by the commit.
 */
export const MAX_RULED_FOLDERS = 45;
/** NAME_MAX of Linux file systems (ext4, xfs), in bytes. */
export const FILE_NAME_MAX_BYTES = 255;
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
    checkApiName(path);
    checkNewPathName(path);
    if (this.ruledFolders(path).length > MAX_RULED_FOLDERS)
      invalid(`must be at most ${MAX_RULED_FOLDERS} folders deep where a pull target takes it`);
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
    if (!this.takesAsFile(path)) return [];
    const folders = this.ruledFolders(path);
    const deferred = folders.slice(0, Math.max(0, options.deferFolders ?? 0));
    const read = folders.slice(deferred.length);
    const [files, underneath] = await Promise.all([
      read.length > 0 ? ledger.liveFilesAmong(read) : Promise.resolve([]),
      ledger.hasLiveFileUnder(path),
    ]);
    const file = files[0];
    if (file !== undefined) throw underFileError(file);
    if (underneath) throw folderOfFilesError(path);
    return deferred;
  }

  /** Whether a pull target takes the path, so that the folder/file rule holds for it. */
  takesAsFile(path: string): boolean {
    return this.selecting(path).some((t) => t.kind === 'pull');
  }

  /** The path's folders the rule covers: those a pull target that takes the path takes too. */
  ruledFolders(path: string): string[] {
    const pulls = this.selecting(path).filter((t) => t.kind === 'pull');
    return ancestorsOf(path).filter((folder) => pulls.some((t) => targetSelects(t, folder)));
  }
}

/** The folder/file rule's refusal of a path that live files lie under. */
export function folderOfFilesError(path: string): PathRuleError {
  return new PathRuleError(
    `path is a folder of other files (a pull target cannot hold "${path}" as a file too)`,
    {
      code: 'path_conflict',
    },
  );
}

/** The folder/file rule's refusal of a path that lies under the live file `file`. */
export function underFileError(file: string): PathRuleError {
  return new PathRuleError(`path lies under "${file}", which is a file (a pull target cannot hold both)`, {
    code: 'path_conflict',
  });
}
