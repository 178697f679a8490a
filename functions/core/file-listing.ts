/**
 * Live files under a prefix, a page at a time (`GET /v1/files?prefix=`). The ledger lists them
 * from its live-files index, partitioned by top folder (docs/api.md, Listing files): a prefix
 * names its top folder, so that a page is one query of one partition; no prefix lists the whole
 * mirror. The cursor is the last path the ledger read, opaque to clients.
 */
import { createHash } from 'node:crypto';
import type { FileVersion } from '../../contracts/model.js';
import { normalizePath, PathRuleError } from '../../contracts/paths.js';
import { ValidationError } from './errors.js';
import type { Ledger } from './ports.js';

export interface FilePage {
  readonly prefix: string;
  readonly files: readonly FileVersion[];
  /** Present while files may remain: pass it back as `cursor`. */
  readonly cursor?: string;
}

const PREFIX_RULE =
  'prefix must be empty (every file) or name its top folder: a folder ending in "/" (photos/2024/), ' +
  'or one going on into a name (photos/2024/IMG_)';

/** The prefix in NFC, or a 400 on `prefix` naming the rule it broke. */
export function checkPrefix(raw: string): string {
  if (raw === '') return raw;
  if (!raw.includes('/')) throw new ValidationError('prefix', PREFIX_RULE);
  const folder = raw.endsWith('/');
  try {
    // A prefix is a path, or a folder's path with its trailing "/": the same rules hold.
    const path = normalizePath(folder ? raw.slice(0, -1) : raw);
    return folder ? `${path}/` : path;
  } catch (err) {
    if (err instanceof PathRuleError)
      throw new ValidationError('prefix', `prefix ${err.rule}`, { code: 'invalid_path', cause: err });
    throw err;
  }
}

function isPath(text: string): boolean {
  try {
    return normalizePath(text) === text;
  } catch {
    return false;
  }
}

/**
 * A page's cursor: the last path listed, past the prefix (`s`), and a tag of the prefix it was
 * listed under (`p`). The path past the prefix, not the whole path beside the prefix: a deep
 * folder's prefix would be in the cursor twice, and a page of paths as long as an S3 key (1,024
 * bytes) under one made a cursor over the 2,048 characters the API takes back.
 */
const encodeCursor = (after: string, prefix: string) =>
  Buffer.from(JSON.stringify({ s: after.slice(prefix.length), p: prefixTag(prefix) }), 'utf8').toString(
    'base64url',
  );

/** Names the prefix in a few characters: enough to tell a cursor of another prefix, not a secret. */
const prefixTag = (prefix: string) =>
  createHash('sha256').update(prefix, 'utf8').digest().subarray(0, 8).toString('base64url');

const notOurs = () =>
  new ValidationError('cursor', 'cursor is not one this API returned', { code: 'invalid_cursor' });
const otherPrefix = (prefix: string) =>
  new ValidationError('cursor', `cursor was returned for another prefix than "${prefix}"`, {
    code: 'invalid_cursor',
  });

type DecodedCursor = { s?: unknown; p?: unknown; after?: unknown; prefix?: unknown } | undefined;

function parseCursorText(cursor: string): DecodedCursor {
  try {
    return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as DecodedCursor;
  } catch {
    return undefined;
  }
}

/** The path a cursor names under `prefix`, undefined when it names none; a cursor of another prefix is a 400. */
function cursorPath(decoded: DecodedCursor, prefix: string): string | undefined {
  if (typeof decoded?.s === 'string' && typeof decoded.p === 'string') {
    // The prefix itself, not only the path's: a cursor of `photos/` sent with no prefix would go on
    // through every file, one of the whole listing with `photos/` skip the files before it.
    if (decoded.p !== prefixTag(prefix)) throw otherPrefix(prefix);
    return `${prefix}${decoded.s}`;
  }
  // The shape before: the whole path and the prefix (a listing under way across a deploy).
  const after = decoded?.after;
  if (typeof after !== 'string' || typeof decoded?.prefix !== 'string' || !isPath(after)) return undefined;
  if (decoded.prefix !== prefix || !after.startsWith(prefix)) throw otherPrefix(prefix);
  return after;
}

function decodeCursor(cursor: string, prefix: string): string {
  const after = cursorPath(parseCursorText(cursor), prefix);
  // A cursor holds a path the index returned: one the path rules refuse was not (and, longer than a
  // key may be, would fail in the store rather than here).
  if (after === undefined || !isPath(after)) throw notOurs();
  return after;
}

/**
 * Up to `limit` live files under `prefix` after `cursor`, in path order (no particular order
 * without a prefix). A page may hold fewer files than `limit` and still have a cursor: files
 * deleted since the index was read are left out.
 */
export async function listFiles(
  deps: { readonly ledger: Pick<Ledger, 'listLiveFiles'> },
  request: { readonly prefix: string; readonly cursor?: string | undefined; readonly limit: number },
): Promise<FilePage> {
  const prefix = checkPrefix(request.prefix);
  const after =
    request.cursor === undefined || request.cursor === '' ? undefined : decodeCursor(request.cursor, prefix);
  const page = await deps.ledger.listLiveFiles({ prefix, after, limit: request.limit });
  return {
    prefix,
    files: page.files,
    ...(page.next === undefined ? {} : { cursor: encodeCursor(page.next, prefix) }),
  };
}
