/** Content type from a file name's extension; a small table, not a MIME database. */
import { extname } from 'node:path';
import { contentTypeSchema } from '../contracts/api.ts';

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
