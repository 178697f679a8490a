/**
 * Copies: CopyObject and the source side of UploadPartCopy (`x-amz-copy-source`, its
 * `versionId` and its conditions).
 */
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { streamToNewFile } from '../../common/stream-to-file.ts';
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

/** The source's path and version id, decoded from `x-amz-copy-source`. */
function parseCopySource(raw: string): { path: string; versionId: string | undefined } {
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
  return { path: path.startsWith('/') ? path.slice(1) : path, versionId };
}

/** The source version the copy reads (never a delete marker). */
function sourceVersion(ctx: Context, raw: string): { bucket: Bucket; key: string; head: ObjectVersion } {
  const { path, versionId } = parseCopySource(raw);
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
  return { bucket, key, head };
}

/** The `x-amz-copy-source-if-*` preconditions against the source version. */
function checkCopyPreconditions(h: Context['req']['headers'], head: ObjectVersion): void {
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
}

/** `x-amz-copy-source`: `[/]<bucket>/<key>[?versionId=<id>]`, URL-encoded. */
export function copySource(ctx: Context): {
  bucket: Bucket;
  key: string;
  version: ObjectVersion;
  versionId: string | undefined;
} {
  const raw = headerValue(ctx.req.headers, 'x-amz-copy-source') ?? '';
  const { bucket, key, head } = sourceVersion(ctx, raw);
  checkCopyPreconditions(ctx.req.headers, head);
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
    await streamToNewFile(temp.path, { flags: 'w' }, (out) =>
      pipeline(
        store.read(segments, start, end),
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            md5.update(chunk);
            checksum?.update(chunk);
            yield chunk;
          }
        },
        out,
      ),
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

/** The metadata directive and checksum algorithm a copy asks for; a copy onto itself must change something. */
function copyOptions(
  ctx: Context,
  target: { bucket: Bucket; key: string },
  source: ReturnType<typeof copySource>,
): { directive: 'COPY' | 'REPLACE'; algorithm: ChecksumAlgorithm | undefined } {
  const directive = headerValue(ctx.req.headers, 'x-amz-metadata-directive') ?? 'COPY';
  if (directive !== 'COPY' && directive !== 'REPLACE') {
    throw errors.invalidArgument('Unknown metadata directive.', 'x-amz-metadata-directive', directive);
  }
  const algorithmHeader = headerValue(ctx.req.headers, 'x-amz-checksum-algorithm')?.toUpperCase();
  if (algorithmHeader !== undefined && !['CRC32', 'SHA1', 'SHA256'].includes(algorithmHeader)) {
    throw errors.notImplemented(`x-amz-checksum-algorithm ${algorithmHeader}`);
  }
  if (
    source.bucket === target.bucket &&
    source.key === target.key &&
    directive === 'COPY' &&
    source.versionId === undefined
  ) {
    throw errors.invalidRequest(
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  return { directive, algorithm: algorithmHeader as ChecksumAlgorithm | undefined };
}

/**
 * The copy's bytes: a single-segment source whose checksum can be kept shares its blob
 * (duplicated), anything else is copied and hashed.
 */
async function copyContent(
  store: S3Store,
  from: ObjectVersion,
  algorithm: ChecksumAlgorithm | undefined,
): Promise<{ segment: Segment; etag: string; checksum: StoredChecksum | undefined }> {
  const sameChecksum =
    from.checksum?.type === 'FULL_OBJECT' &&
    (algorithm === undefined || algorithm === from.checksum.algorithm);
  if (from.segments.length === 1 && from.parts === undefined && (sameChecksum || algorithm === undefined)) {
    const only = from.segments[0] as Segment;
    return {
      segment: { blob: await store.duplicate(only.blob), size: only.size },
      etag: from.etag,
      checksum: sameChecksum ? from.checksum : undefined,
    };
  }
  const copied = await copyBytes(
    store,
    from.segments,
    0,
    from.size - 1,
    algorithm ?? (sameChecksum ? from.checksum?.algorithm : undefined),
  );
  const value = copied.checksum;
  const alg = algorithm ?? from.checksum?.algorithm;
  return {
    segment: copied.segment,
    etag: `"${copied.md5}"`,
    checksum:
      value !== undefined && alg !== undefined ? { algorithm: alg, value, type: 'FULL_OBJECT' } : undefined,
  };
}

export async function copyObject(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const source = copySource(ctx);
  const { directive, algorithm } = copyOptions(ctx, { bucket, key }, source);
  const from = source.version;
  const { segment, etag, checksum } = await copyContent(ctx.store, from, algorithm);
  const replace = directive === 'REPLACE';
  const version = await commit(ctx.store, bucket, key, undefined, {
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
