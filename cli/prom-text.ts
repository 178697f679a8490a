/** Reading Prometheus text exposition (the local stack's `GET /metrics`). */

/** Every series of `name` in exposition text (`name{label="value",...} 12.5`), with its labels. */
export function readSamples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const samples: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_s, c: string) =>
        c === 'n' ? '\n' : c,
      );
    }
    samples.push({ labels, value: Number(m[3]) });
  }
  return samples;
}

/**
 * Reads one series' value out of exposition text: `name{label="value",...} 12.5`.
 * Labels given must all match; undefined when there is no such series.
 */
export function readSample(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  return readSamples(text, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}
