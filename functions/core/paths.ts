/**
 * Logical file paths: what `/media` used to hold, and the key a target stores
 * a file under. Every path entering the system passes through `normalizePath`.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from './errors.js';

/** S3's limit on an object key, in UTF-8 bytes. */
export const S3_MAX_KEY_BYTES = 1024;

// C0 and C1 control characters and DEL: exactly what the rule forbids.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

function invalid(rule: string): never {
  throw new ValidationError('path', `path ${rule}`, { code: 'invalid_path' });
}

/**
 * Checks a client's path and returns it in NFC.
 * @param maxPrefixBytes the longest key prefix of any target, so that prefix + path fits S3's key limit.
 */
export function normalizePath(raw: unknown, maxPrefixBytes = 0): string {
  if (typeof raw !== 'string') invalid('must be a string');
  if (!raw.isWellFormed()) invalid('must be valid UTF-8 (it has a lone surrogate)');
  const path = raw.normalize('NFC');
  if (path.length === 0) invalid('must not be empty');
  if (CONTROL.test(path)) invalid('must not contain control characters');
  if (path.includes('\\')) invalid('must not contain backslashes; use "/" between folders');
  if (path.startsWith('/')) invalid('must be relative (no leading "/")');
  for (const segment of path.split('/')) {
    if (segment === '') invalid('must not contain empty segments ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') invalid('must not contain "." or ".." segments');
  }
  const limit = S3_MAX_KEY_BYTES - maxPrefixBytes;
  if (Buffer.byteLength(path, 'utf8') > limit) invalid(`must be at most ${limit} bytes in UTF-8`);
  return path;
}

/** The change-feed shard of a path: stable for a given shard count. */
export function shardOf(path: string, shards: number): number {
  return createHash('sha256').update(path).digest().readUInt32BE(0) % shards;
}

/**
 * SQS FIFO group and deduplication ids allow 128 ASCII characters at most,
 * and paths may be longer or non-ASCII: hash them.
 */
export function messageGroupId(path: string): string {
  return createHash('sha256').update(path).digest('hex');
}

export function deduplicationId(path: string, version: number, resend?: string): string {
  return createHash('sha256')
    .update(`${path}\n${version}${resend === undefined ? '' : `\n${resend}`}`)
    .digest('hex');
}
