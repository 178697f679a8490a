/**
 * Copies: CopyObject and the source side of UploadPartCopy (`x-amz-copy-source`, its
 * `versionId` and its conditions).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { checksumHasher, headerValue } from './body.ts';
import {
  bucketOf,
  type Context,
  etagMatches,
  eventVersionId,
  keyOf,
  send,
  unquote,
  versionHeader,
} from './context.ts';
import { commit } from './objects.ts';
import { storedHeaders, userMetadata } from './request.ts';
import type { Bucket, ChecksumAlgorithm, ObjectVersion, S3Store, Segment, StoredChecksum } from './store.ts';
import { errors, xmlDocument } from './xml.ts';

/** `x-amz-copy-source`: `[/]<bucket>/<key>[?versionId=<id>]`, URL-encoded. */
export function copySource(ctx: Context): {
  bucket: Bucket;
  key: string;
  version: ObjectVersion;
  versionId: string | undefined;
} {
  const raw = headerValue(ctx.req.headers, 'x-amz-copy-source') ?? '';
  const q = raw.indexOf('?');
  let path: string;
  let versionId: string | undefined;
  try {
    path = decodeURIComponent(q < 0 ? raw : raw.slice(0, q));
    if (q >= 0) {
      const params = new URLSearchParams(raw.slice(q + 1));
      versionId = params.get('versionId') ?? undefined;
      if (versionId === '' || [...params.keys()].some((k) => k !== 'versionId')) throw new Error('bad query');
    }
  } catch {
    throw errors.invalidArgument('Invalid copy source encoding', 'x-amz-copy-source', raw);
  }
  if (path.startsWith('/')) path = path.slice(1);
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) {
    throw errors.invalidArgument(
      'Copy Source must mention the source bucket and key: sourcebucket/sourcekey',
      'x-amz-copy-source',
      raw,
    );
  }
  const bucket = ctx.store.buckets.get(path.slice(0, slash));
  if (!bucket) throw errors.noSuchBucket(path.slice(0, slash));
  const key = path.slice(slash + 1);
  const head =
    versionId === undefined ? bucket.objects.get(key)?.[0] : ctx.store.version(bucket, key, versionId);
  if (!head) throw versionId === undefined ? errors.noSuchKey(key) : errors.noSuchVersion(key, versionId);
  if (head.deleteMarker) {
    if (versionId !== undefined) {
      throw errors.invalidRequest(
        'The source of a copy request may not specifically refer to a delete marker by version id.',
      );
    }
    throw errors.noSuchKey(key);
  }
  const h = ctx.req.headers;
  const modified = Math.floor(Date.parse(head.lastModified) / 1000) * 1000;
  const ifMatch = headerValue(h, 'x-amz-copy-source-if-match');
  const ifNoneMatch = headerValue(h, 'x-amz-copy-source-if-none-match');
  const ifUnmodified = headerValue(h, 'x-amz-copy-source-if-unmodified-since');
  const ifModified = headerValue(h, 'x-amz-copy-source-if-modified-since');
  if (ifMatch !== undefined && !etagMatches(ifMatch, head.etag))
    throw errors.preconditionFailed('x-amz-copy-source-If-Match');
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, head.etag))
    throw errors.preconditionFailed('x-amz-copy-source-If-None-Match');
  if (ifMatch === undefined && ifUnmodified !== undefined && modified > Date.parse(ifUnmodified)) {
    throw errors.preconditionFailed('x-amz-copy-source-If-Unmodified-Since');
  }
  if (ifNoneMatch === undefined && ifModified !== undefined && modified <= Date.parse(ifModified)) {
    throw errors.preconditionFailed('x-amz-copy-source-If-Modified-Since');
  }
  return { bucket, key, version: head, versionId: head.versionId === 'null' ? undefined : head.versionId };
}

/** Copies bytes `[start, end]` of a version into a new blob, hashing them on the way. */
export async function copyBytes(
  store: S3Store,
  segments: readonly Segment[],
  start: number,
  end: number,
  algorithm: ChecksumAlgorithm | undefined,
): Promise<{ segment: Segment; md5: string; checksum: string | undefined }> {
  const temp = store.tempFile();
  const md5 = createHash('md5');
  const checksum = algorithm ? checksumHasher(algorithm) : undefined;
  try {
    await pipeline(
      store.read(segments, start, end),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          md5.update(chunk);
          checksum?.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(temp.path),
    );
    await store.adopt(temp.id);
  } catch (err) {
    await store.discardTemp(temp.id);
    throw err;
  }
  return {
    segment: { blob: temp.id, size: Math.max(0, end - start + 1) },
    md5: md5.digest('hex'),
    checksum: checksum?.digest(),
  };
}

export async function copyObject(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const source = copySource(ctx);
  const directive = headerValue(ctx.req.headers, 'x-amz-metadata-directive') ?? 'COPY';
  if (directive !== 'COPY' && directive !== 'REPLACE') {
    throw errors.invalidArgument('Unknown metadata directive.', 'x-amz-metadata-directive', directive);
  }
  const algorithmHeader = headerValue(ctx.req.headers, 'x-amz-checksum-algorithm')?.toUpperCase();
  if (algorithmHeader !== undefined && !['CRC32', 'SHA1', 'SHA256'].includes(algorithmHeader)) {
    throw errors.notImplemented(`x-amz-checksum-algorithm ${algorithmHeader}`);
  }
  const algorithm = algorithmHeader as ChecksumAlgorithm | undefined;
  if (
    source.bucket === bucket &&
    source.key === key &&
    directive === 'COPY' &&
    source.versionId === undefined
  ) {
    throw errors.invalidRequest(
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  const from = source.version;
  const sameChecksum =
    from.checksum?.type === 'FULL_OBJECT' &&
    (algorithm === undefined || algorithm === from.checksum.algorithm);
  let segment: Segment;
  let etag: string;
  let checksum: StoredChecksum | undefined;
  if (from.segments.length === 1 && from.parts === undefined && (sameChecksum || algorithm === undefined)) {
    const only = from.segments[0] as Segment;
    segment = { blob: await ctx.store.duplicate(only.blob), size: only.size };
    etag = from.etag;
    checksum = sameChecksum ? from.checksum : undefined;
  } else {
    const copied = await copyBytes(
      ctx.store,
      from.segments,
      0,
      from.size - 1,
      algorithm ?? (sameChecksum ? from.checksum?.algorithm : undefined),
    );
    segment = copied.segment;
    etag = `"${copied.md5}"`;
    const value = copied.checksum;
    const alg = algorithm ?? from.checksum?.algorithm;
    checksum =
      value !== undefined && alg !== undefined ? { algorithm: alg, value, type: 'FULL_OBJECT' } : undefined;
  }
  const replace = directive === 'REPLACE';
  const version = await commit(ctx.store, bucket, key, {
    segments: from.size === 0 ? [] : [segment],
    size: from.size,
    etag,
    contentType: replace ? headerValue(ctx.req.headers, 'content-type') : from.contentType,
    headers: replace ? storedHeaders(ctx.req) : from.headers,
    metadata: replace ? userMetadata(ctx.req) : from.metadata,
    checksum,
    parts: undefined,
  });
  if (from.size === 0) await ctx.store.free([segment.blob]);
  const result = xmlDocument('CopyObjectResult', {
    LastModified: version.lastModified,
    ETag: version.etag,
    ...(checksum ? { [`Checksum${checksum.algorithm}`]: checksum.value } : {}),
  });
  send(
    ctx,
    200,
    {
      ...versionHeader(bucket, version),
      ...(source.versionId !== undefined ? { 'x-amz-copy-source-version-id': source.versionId } : {}),
    },
    result,
  );
  ctx.created({
    eventName: 'ObjectCreated:Copy',
    bucket: bucket.name,
    key,
    size: version.size,
    eTag: unquote(version.etag),
    versionId: eventVersionId(version),
  });
}
