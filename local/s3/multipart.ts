/**
 * Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts
 * (ListMultipartUploads pages like the other listings, in list.ts). A completed object keeps
 * its parts' files as its segments (no byte is copied); its ETag is the MD5 of the parts' MD5s
 * with `-<count>`, and with a checksum algorithm its checksum is the composite one (digest of
 * the parts' digests).
 */
import { createHash, randomBytes } from 'node:crypto';
import { checksumHasher, headerValue, readSmallBody, receiveBody } from './body.ts';
import { bucketOf, type Context, eventVersionId, keyOf, send, unquote, versionHeader } from './context.ts';
import { copyBytes, copySource } from './copy.ts';
import { checksumHeaders, commit, parseRange } from './objects.ts';
import { storedHeaders, userMetadata } from './request.ts';
import type { ChecksumAlgorithm, Part, StoredChecksum, Upload } from './store.ts';
import { children, errors, parseXmlBody, S3Error, text, xmlDocument } from './xml.ts';

const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PART_BYTES = 5 * 1024 ** 3;

let lastIdTime = 0;
let idSequence = 0;

/**
 * An upload id that sorts (as a string) after every earlier one: S3 lists a key's uploads by
 * initiation and resumes after an upload-id-marker by comparing ids as strings, so the two
 * orders must agree (docs/local-s3.md). Millisecond time and a sequence number within it lead,
 * random bytes follow.
 */
function newUploadId(): { uploadId: string; initiated: string } {
  const now = Math.max(Date.now(), lastIdTime);
  idSequence = now === lastIdTime ? idSequence + 1 : 0;
  lastIdTime = now;
  const order = now.toString(16).padStart(12, '0') + idSequence.toString(16).padStart(6, '0');
  return { uploadId: order + randomBytes(24).toString('base64url'), initiated: new Date(now).toISOString() };
}

export async function createUpload(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const raw = headerValue(ctx.req.headers, 'x-amz-checksum-algorithm')?.toUpperCase();
  if (raw !== undefined && !['CRC32', 'SHA1', 'SHA256'].includes(raw)) {
    throw errors.notImplemented(`x-amz-checksum-algorithm ${raw}`);
  }
  const type = headerValue(ctx.req.headers, 'x-amz-checksum-type')?.toUpperCase();
  if (type !== undefined && type !== 'COMPOSITE') throw errors.notImplemented(`x-amz-checksum-type ${type}`);
  const upload: Upload = {
    ...newUploadId(),
    bucket: bucket.name,
    key,
    contentType: headerValue(ctx.req.headers, 'content-type'),
    headers: storedHeaders(ctx.req),
    metadata: userMetadata(ctx.req),
    checksumAlgorithm: raw as ChecksumAlgorithm | undefined,
    parts: new Map(),
  };
  ctx.store.uploads.set(upload.uploadId, upload);
  await ctx.store.persist({ upload: upload.uploadId });
  send(
    ctx,
    200,
    raw ? { 'x-amz-checksum-algorithm': raw, 'x-amz-checksum-type': 'COMPOSITE' } : {},
    xmlDocument('InitiateMultipartUploadResult', {
      Bucket: bucket.name,
      Key: key,
      UploadId: upload.uploadId,
    }),
  );
}

function uploadOf(ctx: Context): Upload {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const id = ctx.target.query.get('uploadId') ?? '';
  const upload = ctx.store.uploads.get(id);
  if (!upload || upload.bucket !== bucket.name || upload.key !== key) throw errors.noSuchUpload(id);
  return upload;
}

function partNumberOf(ctx: Context): number {
  const raw = ctx.target.query.get('partNumber') ?? '';
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 10_000) {
    throw errors.invalidArgument(
      'Part number must be an integer between 1 and 10000, inclusive',
      'partNumber',
      raw,
    );
  }
  return n;
}

async function storePart(ctx: Context, upload: Upload, part: Part): Promise<void> {
  // The upload may have been completed or aborted while the bytes arrived.
  if (ctx.store.uploads.get(upload.uploadId) !== upload) {
    await ctx.store.free([part.segment.blob]);
    throw errors.noSuchUpload(upload.uploadId);
  }
  const old = upload.parts.get(part.partNumber);
  upload.parts.set(part.partNumber, part);
  await ctx.store.persist({ upload: upload.uploadId });
  if (old) await ctx.store.free([old.segment.blob]);
}

export async function uploadPart(ctx: Context): Promise<void> {
  const upload = uploadOf(ctx);
  const partNumber = partNumberOf(ctx);
  const body = await receiveBody(ctx.req, ctx.target.query, ctx.store, ctx.signing);
  if (
    body.size > MAX_PART_BYTES ||
    (upload.checksumAlgorithm && body.checksum?.algorithm !== upload.checksumAlgorithm)
  ) {
    await ctx.store.discardTemp(body.tempId);
    if (body.size > MAX_PART_BYTES)
      throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
    throw errors.invalidRequest(
      `Checksum Type mismatch occurred, expected checksum Type: ${upload.checksumAlgorithm?.toLowerCase()}, actual checksum Type: ${body.checksum?.algorithm.toLowerCase() ?? 'null'}`,
    );
  }
  await ctx.store.adopt(body.tempId);
  const part: Part = {
    partNumber,
    segment: { blob: body.tempId, size: body.size },
    etag: `"${body.md5}"`,
    checksum: body.checksum,
    lastModified: new Date().toISOString(),
  };
  await storePart(ctx, upload, part);
  send(ctx, 200, {
    etag: part.etag,
    ...checksumHeaders(part.checksum && { ...part.checksum, type: 'FULL_OBJECT' }),
  });
}

export async function uploadPartCopy(ctx: Context): Promise<void> {
  const upload = uploadOf(ctx);
  const partNumber = partNumberOf(ctx);
  const source = copySource(ctx);
  const rangeHeader = headerValue(ctx.req.headers, 'x-amz-copy-source-range');
  let range: [number, number] = [0, source.version.size - 1];
  if (rangeHeader !== undefined) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader);
    const parsed = m ? parseRange(rangeHeader, source.version.size) : undefined;
    if (!m || !parsed || Number(m[2]) >= source.version.size) {
      throw errors.invalidArgument(
        'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
        'x-amz-copy-source-range',
        rangeHeader,
      );
    }
    range = parsed;
  }
  if (range[1] - range[0] + 1 > MAX_PART_BYTES) {
    throw new S3Error(
      400,
      'InvalidRequest',
      'The specified copy source is larger than the maximum allowable size for a copy source: 5368709120',
    );
  }
  const copied = await copyBytes(
    ctx.store,
    source.version.segments,
    range[0],
    range[1],
    upload.checksumAlgorithm,
  );
  const checksum =
    upload.checksumAlgorithm && copied.checksum
      ? { algorithm: upload.checksumAlgorithm, value: copied.checksum }
      : undefined;
  const part: Part = {
    partNumber,
    segment: copied.segment,
    etag: `"${copied.md5}"`,
    checksum,
    lastModified: new Date().toISOString(),
  };
  await storePart(ctx, upload, part);
  send(
    ctx,
    200,
    source.versionId !== undefined ? { 'x-amz-copy-source-version-id': source.versionId } : {},
    xmlDocument('CopyPartResult', {
      LastModified: part.lastModified,
      ETag: part.etag,
      ...(checksum ? { [`Checksum${checksum.algorithm}`]: checksum.value } : {}),
    }),
  );
}

/** The parts the request lists, in ascending order, each with the ETag (and checksum) it was stored with. */
function listedParts(upload: Upload, listed: readonly unknown[]): Part[] {
  const parts: Part[] = [];
  let previous = 0;
  for (const item of listed) {
    const n = Number(text(item, 'PartNumber'));
    const etag = text(item, 'ETag');
    if (!Number.isInteger(n) || etag === undefined) throw errors.malformedXml();
    if (n <= previous) {
      throw new S3Error(
        400,
        'InvalidPartOrder',
        'The list of parts was not in ascending order. The parts list must be specified in order by part number.',
      );
    }
    previous = n;
    parts.push(listedPart(upload, item, n, etag));
  }
  return parts;
}

function listedPart(upload: Upload, item: unknown, n: number, etag: string): Part {
  const part = upload.parts.get(n);
  const invalid = () =>
    new S3Error(
      400,
      'InvalidPart',
      "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
      {
        UploadId: upload.uploadId,
        PartNumber: String(n),
        ETag: etag,
      },
    );
  if (!part || unquote(etag) !== unquote(part.etag)) throw invalid();
  const algorithm = upload.checksumAlgorithm;
  if (algorithm) {
    const given = text(item, `Checksum${algorithm}`);
    if (given === undefined) {
      throw errors.invalidRequest(
        `The upload was created using a ${algorithm.toLowerCase()} checksum. The complete request must include the checksum for each part. It was missing for part ${n} in the request.`,
      );
    }
    if (given !== part.checksum?.value) throw invalid();
  }
  return part;
}

/** Every part but the last must reach the minimum part size. */
function checkPartSizes(parts: readonly Part[]): void {
  for (const part of parts.slice(0, -1)) {
    if (part.segment.size < MIN_PART_BYTES) {
      throw new S3Error(
        400,
        'EntityTooSmall',
        'Your proposed upload is smaller than the minimum allowed object size.',
        {
          ProposedSize: String(part.segment.size),
          MinSizeAllowed: String(MIN_PART_BYTES),
          PartNumber: String(part.partNumber),
          ETag: unquote(part.etag),
        },
      );
    }
  }
}

/** The multipart ETag (MD5 of the parts' MD5s) and the composite checksum, as S3 computes them. */
function compositeDigests(
  parts: readonly Part[],
  algorithm: ChecksumAlgorithm | undefined,
): { etag: string; checksum: StoredChecksum | undefined } {
  const md5s = Buffer.concat(parts.map((p) => Buffer.from(unquote(p.etag), 'hex')));
  const etag = `"${createHash('md5').update(md5s).digest('hex')}-${parts.length}"`;
  if (!algorithm) return { etag, checksum: undefined };
  const digests = Buffer.concat(parts.map((p) => Buffer.from(p.checksum?.value ?? '', 'base64')));
  const hasher = checksumHasher(algorithm);
  hasher.update(digests);
  const value = hasher.digest();
  return { etag, checksum: { algorithm, value: `${value}-${parts.length}`, type: 'COMPOSITE' } };
}

export async function completeUpload(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  uploadOf(ctx);
  const doc = parseXmlBody(await readSmallBody(ctx.req, 4 * 1024 * 1024), 'CompleteMultipartUpload');
  // Taken again once the body is in: an Abort or another Complete may have ended it meanwhile, and
  // its parts' files with it. From here to its removal nothing waits, so one Complete only wins.
  const upload = uploadOf(ctx);
  const listed = children(doc, 'Part');
  if (listed.length === 0) {
    throw new S3Error(
      400,
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema',
    );
  }
  const parts = listedParts(upload, listed);
  checkPartSizes(parts);
  const { etag, checksum } = compositeDigests(parts, upload.checksumAlgorithm);
  ctx.store.uploads.delete(upload.uploadId);
  const unlisted = [...upload.parts.values()].filter((p) => !parts.includes(p)).map((p) => p.segment.blob);
  const version = await commit(
    ctx.store,
    bucket,
    upload.key,
    { upload: upload.uploadId },
    {
      segments: parts.map((p) => p.segment),
      size: parts.reduce((sum, p) => sum + p.segment.size, 0),
      etag,
      contentType: upload.contentType,
      headers: upload.headers,
      metadata: upload.metadata,
      checksum,
      parts: parts.length,
    },
  );
  await ctx.store.free(unlisted);
  send(
    ctx,
    200,
    versionHeader(bucket, version),
    xmlDocument('CompleteMultipartUploadResult', {
      Location: `http://${headerValue(ctx.req.headers, 'host') ?? '127.0.0.1'}/${bucket.name}/${encodeURIComponent(upload.key)}`,
      Bucket: bucket.name,
      Key: upload.key,
      ETag: etag,
      ...(checksum ? { [`Checksum${checksum.algorithm}`]: checksum.value, ChecksumType: 'COMPOSITE' } : {}),
    }),
  );
  ctx.created({
    eventName: 'ObjectCreated:CompleteMultipartUpload',
    bucket: bucket.name,
    key: upload.key,
    size: version.size,
    eTag: unquote(etag),
    versionId: eventVersionId(version),
  });
}

export async function abortUpload(ctx: Context): Promise<void> {
  const upload = uploadOf(ctx);
  ctx.store.uploads.delete(upload.uploadId);
  await ctx.store.persist({ upload: upload.uploadId });
  await ctx.store.free([...upload.parts.values()].map((p) => p.segment.blob));
  send(ctx, 204);
}

export function listParts(ctx: Context): void {
  const upload = uploadOf(ctx);
  const max = Math.min(1000, Number(ctx.target.query.get('max-parts') ?? 1000));
  const marker = Number(ctx.target.query.get('part-number-marker') ?? 0);
  if (!Number.isInteger(max) || max < 0 || !Number.isInteger(marker) || marker < 0) {
    throw errors.invalidArgument('max-parts and part-number-marker must be non-negative integers');
  }
  const all = [...upload.parts.values()]
    .filter((p) => p.partNumber > marker)
    .sort((a, b) => a.partNumber - b.partNumber);
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  send(
    ctx,
    200,
    {},
    xmlDocument('ListPartsResult', {
      Bucket: upload.bucket,
      Key: upload.key,
      UploadId: upload.uploadId,
      PartNumberMarker: marker,
      NextPartNumberMarker: page.at(-1)?.partNumber ?? marker,
      MaxParts: max,
      IsTruncated: truncated,
      ChecksumAlgorithm: upload.checksumAlgorithm,
      StorageClass: 'STANDARD',
      Part: page.map((p) => ({
        PartNumber: p.partNumber,
        LastModified: p.lastModified,
        ETag: p.etag,
        Size: p.segment.size,
        ...(p.checksum ? { [`Checksum${p.checksum.algorithm}`]: p.checksum.value } : {}),
      })),
    }),
  );
}
