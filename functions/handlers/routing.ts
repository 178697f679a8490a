/** Request routing helpers that need no configuration (so unit tests can import them). */

const FILE_SUB_RESOURCES = new Set(['versions', 'content']);

/**
 * Clients send a file path as one segment (`a%2Fb.jpg`). Some proxies, API Gateway's HTTP APIs
 * among them by public reports, decode `%2F` before the function sees it: then the file path is
 * every segment after `/v1/files/` but a trailing `versions` or `content`. Either way the router
 * gets one encoded segment.
 */
export function routingPath(rawPath: string): string {
  const prefix = '/v1/files/';
  if (!rawPath.startsWith(prefix)) return rawPath;
  const segments = rawPath.slice(prefix.length).split('/');
  const last = segments.at(-1);
  const sub =
    segments.length > 1 && last !== undefined && FILE_SUB_RESOURCES.has(last) ? segments.pop() : undefined;
  const file = segments.join('%2F');
  return `${prefix}${file}${sub === undefined ? '' : `/${sub}`}`;
}
