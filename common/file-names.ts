/**
 * File names as a folder gives them: bytes. Linux allows any bytes but '/' and NUL, and Node's
 * default decoding reads a name that is not valid UTF-8 with U+FFFD in its place, which names no
 * file (or another one, spelled so). The sync's folder walk and the agent's verify read names as
 * bytes and decode them with these.
 */

// ignoreBOM keeps a leading U+FEFF, which is part of the name: dropped, it named another file.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The name as text, or undefined when it is not valid UTF-8. */
export function decodeName(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * A name that is not valid UTF-8, readable and one of its own: each byte outside a valid UTF-8
 * sequence as `\xNN`, the rest as it is (a sequence is at most 4 bytes).
 */
export function escapeNonUtf8(bytes: Buffer): string {
  let out = '';
  let at = 0;
  while (at < bytes.length) {
    const length = [1, 2, 3, 4].find((n) => at + n <= bytes.length && decodeName(bytes.subarray(at, at + n)));
    if (length === undefined) {
      out += `\\x${(bytes[at] as number).toString(16).padStart(2, '0')}`;
      at++;
    } else {
      out += bytes.subarray(at, at + length).toString('utf8');
      at += length;
    }
  }
  return out;
}
