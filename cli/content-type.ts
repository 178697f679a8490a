/** Content type from a file name's extension; a small table, not a MIME database. */
import { extname } from 'node:path';
import { contentTypeSchema } from '../contracts/api.ts';
import { contentTypeAllowed } from '../contracts/content-type.ts';

const BY_EXTENSION: Readonly<Record<string, string>> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  svg: 'image/svg+xml',
  avif: 'image/avif',
  mp4: 'video/mp4',
  webm: 'video/webm',
  mov: 'video/quicktime',
  mp3: 'audio/mpeg',
  wav: 'audio/wav',
  ogg: 'audio/ogg',
  pdf: 'application/pdf',
  txt: 'text/plain',
  json: 'application/json',
};

export const FALLBACK_CONTENT_TYPE = 'application/octet-stream';

export function guessContentType(fileName: string): string {
  const ext = extname(fileName).slice(1).toLowerCase();
  return Object.hasOwn(BY_EXTENSION, ext)
    ? (BY_EXTENSION[ext] ?? FALLBACK_CONTENT_TYPE)
    : FALLBACK_CONTENT_TYPE;
}

/**
 * The type a file is sent as by its name: the guess, or application/octet-stream (what an unknown
 * extension gets) when `accepted` refuses the guess but takes that. The list lets any bytes in as
 * application/octet-stream, so refusing the guess kept out nothing but the file (a Takeout
 * `IMG_0001.jpg.json` sidecar, probe U9). `fellBackFrom`: the guess given up.
 */
export function acceptedGuess(
  fileName: string,
  accepted: readonly string[],
): { contentType: string; fellBackFrom?: string } {
  const guessed = guessContentType(fileName);
  if (contentTypeAllowed(guessed, accepted) || !contentTypeAllowed(FALLBACK_CONTENT_TYPE, accepted)) {
    return { contentType: guessed };
  }
  return { contentType: FALLBACK_CONTENT_TYPE, fellBackFrom: guessed };
}

/**
 * A stored object's own type as the API takes it (`type/subtype`, parameters dropped, lower case);
 * undefined for S3's defaults when none was given (`binary/octet-stream`, `application/octet-stream`)
 * and for what is no type: the extension then decides.
 */
export function storedContentType(raw: string | undefined): string | undefined {
  const type = raw?.split(';')[0]?.trim() ?? '';
  if (/^(binary|application)\/octet-stream$/i.test(type)) return undefined;
  const parsed = contentTypeSchema.safeParse(type);
  return parsed.success ? parsed.data : undefined;
}
