/** A path's versions, newest first, a page at a time (`GET /v1/files/{path}/versions`). */

import type { FileVersion } from '../../contracts/model.js';
import { NotFoundError } from './errors.js';
import type { Ledger } from './ports.js';

export interface VersionPage {
  readonly path: string;
  readonly versions: readonly FileVersion[];
  /** Set when older versions remain: the `before` of the next page. */
  readonly nextBefore?: number;
}

/**
 * Up to `limit` versions of `path` below `before` (all, without it). A path with no version at
 * all is not found; a page past its oldest version is empty.
 */
export async function listFileVersions(
  deps: { readonly ledger: Pick<Ledger, 'listVersions'> },
  path: string,
  page: { readonly limit: number; readonly before?: number | undefined },
): Promise<VersionPage> {
  const versions = await deps.ledger.listVersions(path, {
    limit: page.limit,
    ...(page.before === undefined ? {} : { before: page.before }),
  });
  if (versions.length === 0 && page.before === undefined) {
    throw new NotFoundError(`no file at "${path}"`, 'path');
  }
  const last = versions.at(-1);
  return {
    path,
    versions,
    ...(versions.length === page.limit && last && last.version > 1 ? { nextBefore: last.version } : {}),
  };
}
