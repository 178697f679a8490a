/** Reading Prometheus text exposition (the local stack's `GET /metrics`). */

/**
 * Reads one series' value out of exposition text: `name{label="value",...} 12.5`.
 * Labels given must all match; undefined when there is no such series.
 */
export function readSample(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      found[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_s, c: string) =>
        c === 'n' ? '\n' : c,
      );
    }
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return undefined;
}
