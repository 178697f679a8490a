/**
 * Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects (copies: copy.ts).
 */
import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { checksumHasher, headerValue, readSmallBody, receiveBody } from './body.ts';
import {
  bucketOf,
  type Context,
  etagMatches,
  eventVersionId,
  keyOf,
  send,
  versionHeader,
} from './context.ts';
import { storedHeaders, userMetadata, versionIdParam } from './request.ts';
import type {
  Bucket,
  ChecksumAlgorithm,
  ObjectVersion,
  S3Store,
  StoreChange,
  StoredChecksum,
} from './store.ts';
import { children, errors, parseXmlBody, S3Error, text, xmlDocument } from './xml.ts';

const DEFAULT_TYPE = 'application/octet-stream';

export async function putObject(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const body = await receiveBody(ctx.req, ctx.target.query, ctx.store, ctx.signing);
  await ctx.store.adopt(body.tempId);
  // Decided with nothing awaited between the check and the commit (its version is in the index at
  // once): of concurrent create-only writes one wins, as on S3.
  try {
    checkWriteConditions(ctx, bucket, key);
  } catch (err) {
    await ctx.store.free([body.tempId]);
    throw err;
  }
  const checksum: StoredChecksum | undefined = body.checksum && { ...body.checksum, type: 'FULL_OBJECT' };
  const version = await commit(ctx.store, bucket, key, undefined, {
    segments: [{ blob: body.tempId, size: body.size }],
    size: body.size,
    etag: `"${body.md5}"`,
    contentType: headerValue(ctx.req.headers, 'content-type'),
    headers: storedHeaders(ctx.req),
    metadata: userMetadata(ctx.req),
    checksum,
    parts: undefined,
  });
  send(ctx, 200, { etag: version.etag, ...versionHeader(bucket, version), ...checksumHeaders(checksum) });
  ctx.created({
    eventName: 'ObjectCreated:Put',
    bucket: bucket.name,
    key,
    size: version.size,
    eTag: body.md5,
    versionId: eventVersionId(version),
  });
}

/** Conditional writes (`If-None-Match: *`, `If-Match`), decided when the bytes are in, just before the commit. */
function checkWriteConditions(ctx: Context, bucket: Bucket, key: string): void {
  const current = ctx.store.current(bucket, key);
  const ifNoneMatch = headerValue(ctx.req.headers, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch !== '*') throw errors.notImplemented('If-None-Match other than * on writes');
    if (current) throw errors.preconditionFailed('If-None-Match');
  }
  const ifMatch = headerValue(ctx.req.headers, 'if-match');
  if (ifMatch !== undefined && (!current || !etagMatches(ifMatch, current.etag))) {
    if (!current) throw errors.noSuchKey(key);
    throw errors.preconditionFailed('If-Match');
  }
}

/**
 * Stores a version and frees what it replaced, once the index says so. `also`: what the caller
 * changed with it (a completed upload's removal), recorded in the same journal line.
 */
export async function commit(
  store: S3Store,
  bucket: Bucket,
  key: string,
  also: StoreChange | undefined,
  fields: Omit<ObjectVersion, 'versionId' | 'lastModified' | 'deleteMarker'>,
): Promise<ObjectVersion> {
  const { version, freed } = store.putVersion(bucket, key, { ...fields, deleteMarker: false });
  await store.persist({ object: [bucket.name, key] }, ...(also === undefined ? [] : [also]));
  await store.free(freed);
  return version;
}

export function checksumHeaders(checksum: StoredChecksum | undefined): OutgoingHttpHeaders {
  if (!checksum) return {};
  return { [`x-amz-checksum-${checksum.algorithm.toLowerCase()}`]: checksum.value };
}

/** The version a GET/HEAD/copy source names, or S3's error for it. */
function findVersion(
  ctx: Context,
  bucket: Bucket,
  key: string,
  versionId: string | undefined,
): ObjectVersion {
  if (versionId === undefined) {
    const head = bucket.objects.get(key)?.[0];
    if (!head) throw errors.noSuchKey(key);
    if (head.deleteMarker) {
      ctx.res.setHeader('x-amz-delete-marker', 'true');
      if (bucket.versioning !== undefined) ctx.res.setHeader('x-amz-version-id', head.versionId);
      throw errors.noSuchKey(key);
    }
    return head;
  }
  const version = ctx.store.version(bucket, key, versionId);
  if (!version) throw errors.noSuchVersion(key, versionId);
  if (version.deleteMarker) {
    ctx.res.setHeader('x-amz-delete-marker', 'true');
    ctx.res.setHeader('x-amz-version-id', version.versionId);
    ctx.res.setHeader('allow', 'DELETE');
    throw errors.methodNotAllowed(ctx.req.method ?? 'GET');
  }
  return version;
}

/** Read conditions (RFC 9110 order, as S3 applies them). */
function checkReadConditions(ctx: Context, version: ObjectVersion): 'ok' | 'not-modified' {
  const h = ctx.req.headers;
  const modified = Math.floor(Date.parse(version.lastModified) / 1000) * 1000;
  const ifMatch = headerValue(h, 'if-match');
  const ifUnmodified = headerValue(h, 'if-unmodified-since');
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, version.etag)) throw errors.preconditionFailed('If-Match');
  } else if (ifUnmodified !== undefined && modified > Date.parse(ifUnmodified)) {
    throw errors.preconditionFailed('If-Unmodified-Since');
  }
  const ifNoneMatch = headerValue(h, 'if-none-match');
  const ifModified = headerValue(h, 'if-modified-since');
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, version.etag)) return 'not-modified';
  } else if (ifModified !== undefined && modified <= Date.parse(ifModified)) return 'not-modified';
  return 'ok';
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n`; anything else S3 ignores (whole object). */
export function parseRange(header: string | undefined, size: number): [number, number] | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw invalidRange(header, size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) throw invalidRange(header, size);
  return [start, end];
}

const invalidRange = (header: string | undefined, size: number) =>
  new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', {
    RangeRequested: header ?? '',
    ActualObjectSize: String(size),
  });

const RESPONSE_OVERRIDES: Record<string, string> = {
  'response-content-type': 'content-type',
  'response-content-disposition': 'content-disposition',
  'response-content-encoding': 'content-encoding',
  'response-content-language': 'content-language',
  'response-cache-control': 'cache-control',
  'response-expires': 'expires',
};

/** The headers of a GET or HEAD answer: the version's stored ones, then the `response-*` overrides. */
function objectHeaders(ctx: Context, bucket: Bucket, version: ObjectVersion): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    etag: version.etag,
    'last-modified': new Date(version.lastModified).toUTCString(),
    'accept-ranges': 'bytes',
    'content-type': version.contentType ?? DEFAULT_TYPE,
    ...versionHeader(bucket, version),
  };
  for (const [name, value] of version.headers) headers[name] = value;
  for (const [name, value] of version.metadata) headers[`x-amz-meta-${name}`] = value;
  if (version.parts !== undefined) headers['x-amz-mp-parts-count'] = version.parts;
  for (const [param, header] of Object.entries(RESPONSE_OVERRIDES)) {
    const value = ctx.target.query.get(param);
    if (value !== null) headers[header] = value;
  }
  return headers;
}

/** The byte range asked for: one part (`partNumber`), a `Range` header, or undefined for all. */
function requestedRange(ctx: Context, version: ObjectVersion): [number, number] | undefined {
  const partNumber = ctx.target.query.get('partNumber');
  if (partNumber === null) return parseRange(headerValue(ctx.req.headers, 'range'), version.size);
  const n = Number(partNumber);
  if (!Number.isInteger(n) || n < 1 || n > Math.max(1, version.segments.length)) {
    throw errors.invalidArgument(
      'Part number must be an integer between 1 and the parts count',
      'partNumber',
      partNumber,
    );
  }
  const start = version.segments.slice(0, n - 1).reduce((sum, s) => sum + s.size, 0);
  return [start, start + (version.segments[n - 1]?.size ?? 0) - 1];
}

function sendNotModified(ctx: Context, headers: OutgoingHttpHeaders): void {
  for (const [name, value] of Object.entries(headers)) ctx.res.setHeader(name, value as string);
  ctx.res.removeHeader('content-type');
  ctx.res.statusCode = 304;
  ctx.res.end();
}

/** Streams `[start, end]` of the version (nothing for HEAD or an empty object). */
async function sendBytes(ctx: Context, version: ObjectVersion, start: number, end: number): Promise<void> {
  if (ctx.req.method === 'HEAD' || version.size === 0) {
    ctx.res.end();
    return;
  }
  try {
    await pipeline(ctx.store.read(version.segments, start, end), ctx.res);
  } catch (err) {
    // A client that hangs up mid-download (ranged readers often do) is no server error.
    if (ctx.res.destroyed || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') return;
    throw err;
  }
}

export async function getObject(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const version = findVersion(ctx, bucket, key, versionIdParam(ctx.target.query));
  const headers = objectHeaders(ctx, bucket, version);
  if (checkReadConditions(ctx, version) === 'not-modified') return sendNotModified(ctx, headers);
  const range = requestedRange(ctx, version);
  const wantChecksum = headerValue(ctx.req.headers, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED';
  if (wantChecksum && version.checksum && range === undefined) {
    Object.assign(headers, checksumHeaders(version.checksum), {
      'x-amz-checksum-type': version.checksum.type,
    });
  }
  for (const [name, value] of Object.entries(headers)) ctx.res.setHeader(name, value as string);
  const [start, end] = range ?? [0, version.size - 1];
  if (range) ctx.res.setHeader('content-range', `bytes ${start}-${end}/${version.size}`);
  ctx.res.setHeader('content-length', Math.max(0, end - start + 1));
  ctx.res.statusCode = range ? 206 : 200;
  await sendBytes(ctx, version, start, end);
}

export async function deleteObject(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const result = await deleteOne(ctx.store, bucket, key, versionIdParam(ctx.target.query));
  send(ctx, 204, {
    ...(result.versionId !== undefined ? { 'x-amz-version-id': result.versionId } : {}),
    ...(result.deleteMarker ? { 'x-amz-delete-marker': 'true' } : {}),
  });
}

interface Deleted {
  readonly versionId: string | undefined;
  readonly deleteMarker: boolean;
}

/**
 * With a version id: removes that version only (a delete marker too). Without: in a
 * versioned bucket, a delete marker becomes the current version; otherwise the `null`
 * version goes (and, when versioning is suspended, a `null` delete marker takes its place).
 */
async function deleteOne(
  store: S3Store,
  bucket: Bucket,
  key: string,
  versionId: string | undefined,
): Promise<Deleted> {
  let freed: string[] = [];
  let result: Deleted;
  if (versionId !== undefined) {
    const removed = store.removeVersion(bucket, key, versionId);
    freed = removed.freed;
    result = { versionId, deleteMarker: removed.removed?.deleteMarker ?? false };
  } else if (bucket.versioning === undefined) {
    freed = store.removeVersion(bucket, key, 'null').freed;
    result = { versionId: undefined, deleteMarker: false };
  } else {
    if (bucket.versioning === 'Suspended') freed = store.removeVersion(bucket, key, 'null').freed;
    const { version, freed: more } = store.putVersion(bucket, key, {
      deleteMarker: true,
      segments: [],
      size: 0,
      etag: '',
      contentType: undefined,
      headers: [],
      metadata: [],
      checksum: undefined,
      parts: undefined,
    });
    freed.push(...more);
    result = { versionId: version.versionId, deleteMarker: true };
  }
  await store.persist({ object: [bucket.name, key] });
  await store.free(freed);
  return result;
}

/** DeleteObjects needs Content-MD5 or a checksum header, and it must match the body. */
function checkDeleteBodyDigest(ctx: Context, raw: string): void {
  const md5 = headerValue(ctx.req.headers, 'content-md5');
  const checksumHeader = Object.keys(ctx.req.headers).find((h) => h.startsWith('x-amz-checksum-'));
  if (md5 === undefined && checksumHeader === undefined) {
    throw errors.invalidRequest('Missing required header for this request: Content-MD5 or x-amz-checksum-*');
  }
  if (md5 !== undefined && createHash('md5').update(raw).digest('base64') !== md5) {
    throw errors.badDigest('The Content-MD5 you specified did not match what we received.');
  }
  if (checksumHeader === undefined) return;
  const algorithm = checksumHeader.slice('x-amz-checksum-'.length).toUpperCase() as ChecksumAlgorithm;
  if (!['CRC32', 'SHA1', 'SHA256'].includes(algorithm)) throw errors.notImplemented(checksumHeader);
  const hasher = checksumHasher(algorithm);
  hasher.update(Buffer.from(raw));
  if (hasher.digest() !== headerValue(ctx.req.headers, checksumHeader)) {
    throw errors.badDigest(`The ${algorithm} you specified did not match the calculated checksum.`);
  }
}

export async function deleteObjects(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const raw = await readSmallBody(ctx.req, 2 * 1024 * 1024);
  checkDeleteBodyDigest(ctx, raw);
  const doc = parseXmlBody(raw, 'Delete');
  const objects = children(doc, 'Object');
  if (objects.length === 0 || objects.length > 1000) throw errors.malformedXml();
  const quiet = text(doc, 'Quiet') === 'true';
  const deleted: Record<string, string | undefined>[] = [];
  for (const object of objects) {
    const key = text(object, 'Key');
    if (key === undefined || key === '') throw errors.malformedXml();
    const versionId = text(object, 'VersionId');
    const result = await deleteOne(ctx.store, bucket, key, versionId);
    if (quiet) continue;
    deleted.push({
      Key: key,
      VersionId: versionId,
      DeleteMarker: result.deleteMarker ? 'true' : undefined,
      DeleteMarkerVersionId: result.deleteMarker && versionId === undefined ? result.versionId : undefined,
    });
  }
  send(ctx, 200, {}, xmlDocument('DeleteResult', { Deleted: deleted }));
}
