/** Bytes read at once from each of two same-sized files that go to one path. */
const COMPARE_CHUNK = 4 * 1024 * 1024;

/**
 * Whether two blobs hold the same bytes: read chunk by chunk, so a difference stops the reading
 * early. Two files that go to one path are one version when they are equal (the API keeps an equal
 * head), and the later replaces the earlier when they are not.
 */
export async function sameBytes(a: Blob, b: Blob): Promise<boolean> {
  if (a.size !== b.size) return false;
  for (let at = 0; at < a.size; at += COMPARE_CHUNK) {
    const [x, y] = await Promise.all(
      [a, b].map(async (blob) => new Uint8Array(await blob.slice(at, at + COMPARE_CHUNK).arrayBuffer())),
    );
    if (x === undefined || y === undefined || !equalBytes(x, y)) return false;
  }
  return true;
}

function equalBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
