/**
 * What the mirror holds. `ls` pages through the live files under a prefix (`GET /v1/files`).
 * `sync` needs every path's head, tombstones included, and a feed cursor to see its own commits
 * land: it folds the change feed (`GET /v1/changes`), which holds every committed version once,
 * so the highest version per path is its head. That cost grows with the feed's history (one
 * request per 1,000 versions), which docs/cli.md states.
 */
import type { ChangesPage, ListedFile } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';

export interface RemoteHead {
  readonly path: string;
  readonly version: number;
  /** Null for a tombstone. */
  readonly sha256: string | null;
  readonly size: number;
  readonly contentType: string | null;
  readonly committedAt: string;
  readonly deleted: boolean;
}

export interface RemoteListing {
  /** Every path's head, tombstones included (a deleted path keeps its version count). */
  readonly heads: Map<string, RemoteHead>;
  /**
   * The SHA-256 of every version's content, older versions' and deleted paths' included: the
   * mirror holds it (the origin keeps a blob while a version names it), so a file with it can be
   * committed on proof of possession. One entry per distinct content.
   */
  readonly contents: Set<string>;
  /** The feed's cursor after the last change read: pass it to `followFeed` for what comes next. */
  readonly cursor: string | undefined;
}

export type FeedClient = Pick<MirrorApi, 'listChanges'>;

/**
 * The prefix as the API takes it: a leading "/" dropped, and a bare name (`photos`) taken as the
 * top folder (`photos/`), since the API lists by top folder (docs/api.md, Listing files).
 */
function listingPrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.includes('/') ? trimmed : `${trimmed}/`;
}

/** Every live file under `prefix`, page by page (`GET /v1/files`), sorted by path. */
export async function listLiveFiles(
  client: Pick<MirrorApi, 'listFiles'>,
  prefix: string,
): Promise<ListedFile[]> {
  const files: ListedFile[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listFiles({
      prefix: listingPrefix(prefix),
      limit: PAGE,
      ...(cursor === undefined ? {} : { cursor }),
    });
    files.push(...page.files);
    cursor = page.cursor;
  } while (cursor !== undefined);
  // Sorted already under a prefix; the whole mirror comes grouped by top folder.
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The feed's largest page (contracts/api.ts maxPageSize). */
const PAGE = 1000;

/** Keeps the higher version of each path: feed order within a path is not guaranteed. */
function foldChanges(
  heads: Map<string, RemoteHead>,
  changes: ChangesPage['changes'],
  contents?: Set<string>,
): number {
  let newer = 0;
  for (const change of changes) {
    if (change.sha256 !== null) contents?.add(change.sha256);
    const known = heads.get(change.path);
    if (known !== undefined && known.version >= change.version) continue;
    heads.set(change.path, change);
    newer++;
  }
  return newer;
}

/**
 * Called after each page of the feed is folded into the heads, with the number of versions it held
 * (0 for the last) and the cursor after it. Returning `false` ends the read there.
 */
export type OnFeedPage = (versions: number, cursor: string | undefined) => unknown;

/**
 * Reads the feed from `cursor` (the start without one) until caught up (or `onPage` says enough),
 * folding heads into `heads`. On a busy mirror a page may never come back empty while writers go
 * on: `onPage` is where a reader acts on what each page brought, not at the end.
 */
export async function followFeed(
  client: FeedClient,
  heads: Map<string, RemoteHead>,
  cursor: string | undefined,
  onPage?: OnFeedPage,
  contents?: Set<string>,
): Promise<string | undefined> {
  let at = cursor;
  for (;;) {
    const page = await client.listChanges({ ...(at === undefined ? {} : { cursor: at }), limit: PAGE });
    at = page.cursor;
    foldChanges(heads, page.changes, contents);
    const more = onPage?.(page.changes.length, at);
    if (page.changes.length === 0 || more === false) return at;
  }
}

/** The whole feed: a page a request, so `onPage` is how a long read shows it is moving. */
export async function readHeads(client: FeedClient, onPage?: OnFeedPage): Promise<RemoteListing> {
  const heads = new Map<string, RemoteHead>();
  const contents = new Set<string>();
  const cursor = await followFeed(client, heads, undefined, onPage, contents);
  return { heads, contents, cursor };
}
