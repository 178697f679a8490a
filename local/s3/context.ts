/**
 * What every operation gets (the request, the store, its target, how to report created
 * objects) and how it answers.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { S3ObjectCreated } from '../emulators.ts';
import type { ChunkSigning } from './body.ts';
import type { Target } from './request.ts';
import type { Bucket, ObjectVersion, S3Store } from './store.ts';
import { errors } from './xml.ts';

export interface Context {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly store: S3Store;
  readonly target: Target;
  readonly requestId: string;
  readonly signing: ChunkSigning | undefined;
  /** Reports a created object (after it is stored and visible). */
  readonly created: (event: Omit<S3ObjectCreated, 'sourceIp' | 'requestId' | 'time'>) => void;
}

export function send(ctx: Context, status: number, headers: OutgoingHttpHeaders = {}, body?: string): void {
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined) ctx.res.setHeader(name, value);
  if (body !== undefined) {
    ctx.res.setHeader('content-type', 'application/xml');
    ctx.res.setHeader('content-length', Buffer.byteLength(body));
  } else if (!ctx.res.hasHeader('content-length') && status !== 304) ctx.res.setHeader('content-length', 0);
  ctx.res.statusCode = status;
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

export function bucketOf(ctx: Context): Bucket {
  const name = ctx.target.bucket ?? '';
  const bucket = ctx.store.buckets.get(name);
  if (!bucket) throw errors.noSuchBucket(name);
  return bucket;
}

export function keyOf(ctx: Context): string {
  const key = ctx.target.key;
  if (key === undefined) throw errors.invalidRequest('A key is required');
  return key;
}

/** The version id a response names: only buckets that ever had versioning report one. */
export function versionHeader(bucket: Bucket, version: ObjectVersion): OutgoingHttpHeaders {
  return bucket.versioning === undefined ? {} : { 'x-amz-version-id': version.versionId };
}

/** The version id an event carries: a real one only (a `null` version has none to pin). */
export const eventVersionId = (version: ObjectVersion) =>
  version.versionId === 'null' ? undefined : version.versionId;

export const unquote = (etag: string) => etag.replace(/^"|"$/g, '');

/** S3's ETag comparison in conditional headers: quotes optional, `*` matches any. */
export function etagMatches(header: string, etag: string): boolean {
  return header
    .split(',')
    .map((s) => s.trim())
    .some((s) => s === '*' || unquote(s.replace(/^W\//, '')) === unquote(etag));
}
