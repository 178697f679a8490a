/**
 * ListObjectsV2, ListObjects (V1: rclone's default against "Other" providers),
 * ListObjectVersions and ListMultipartUploads. Keys sort by their UTF-8 bytes, as S3 sorts
 * them; with a delimiter, every key whose rest (after the prefix) holds it rolls up into one
 * CommonPrefix, which counts once toward max-keys (max-uploads), also at the bucket's root.
 * A truncated page names its last entry, a key or a common prefix, as the next marker: a
 * client resumes there, and a marker that does not advance makes it ask for the same page
 * for ever (rclone does).
 */
import { bucketOf, type Context, send } from './context.ts';
import type { Bucket, ObjectVersion, Upload } from './store.ts';
import { errors, type XmlTree, xmlDocument } from './xml.ts';

const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** S3's `encoding-type=url`: keys percent-encoded, `/` kept. */
const urlEncode = (s: string) =>
  encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%2F/g, '/');

interface ListParams {
  readonly prefix: string;
  readonly delimiter: string;
  readonly maxKeys: number;
  readonly encode: (s: string) => string;
  readonly encodingType: string | undefined;
}

function params(ctx: Context, maxName: 'max-keys' | 'max-uploads' = 'max-keys'): ListParams {
  const q = ctx.target.query;
  const rawMax = q.get(maxName) ?? '1000';
  if (!/^\d{1,10}$/.test(rawMax))
    throw errors.invalidArgument(
      `Provided ${maxName} not an integer or within integer range`,
      maxName,
      rawMax,
    );
  const encodingType = q.get('encoding-type') ?? undefined;
  if (encodingType !== undefined && encodingType !== 'url') {
    throw errors.invalidArgument(
      'Invalid Encoding Method specified in Request',
      'encoding-type',
      encodingType,
    );
  }
  return {
    prefix: q.get('prefix') ?? '',
    delimiter: q.get('delimiter') ?? '',
    maxKeys: Math.min(1000, Number(rawMax)),
    encode: encodingType === 'url' ? urlEncode : (s) => s,
    encodingType,
  };
}

type Entry = { kind: 'key'; key: string } | { kind: 'prefix'; prefix: string };

/**
 * Walks sorted keys after `after` (exclusive), rolling keys up into common prefixes.
 * Returns up to `max` entries and whether more remain.
 */
function walk(
  keys: readonly string[],
  p: ListParams,
  after: string,
): { entries: Entry[]; truncated: boolean } {
  const entries: Entry[] = [];
  let lastPrefix: string | undefined;
  for (const key of keys) {
    if (!key.startsWith(p.prefix) || byBytes(key, after) <= 0 || insideReturnedPrefix(key, p, after))
      continue;
    let entry: Entry = { kind: 'key', key };
    const prefix = commonPrefixOf(key, p);
    if (prefix !== undefined) {
      if (prefix === lastPrefix) continue;
      lastPrefix = prefix;
      entry = { kind: 'prefix', prefix };
    }
    if (entries.length === p.maxKeys) return { entries, truncated: true };
    entries.push(entry);
  }
  return { entries, truncated: false };
}

/** A resumed listing skips the rest of a common prefix it already returned. */
const insideReturnedPrefix = (key: string, p: ListParams, after: string) =>
  p.delimiter !== '' && after.endsWith(p.delimiter) && after.startsWith(p.prefix) && key.startsWith(after);

/** The common prefix a key rolls up into (up to the first delimiter after the prefix), if any. */
function commonPrefixOf(key: string, p: ListParams): string | undefined {
  if (p.delimiter === '') return undefined;
  const at = key.indexOf(p.delimiter, p.prefix.length);
  return at < 0 ? undefined : key.slice(0, at + p.delimiter.length);
}

function liveKeys(bucket: Bucket): string[] {
  const keys: string[] = [];
  for (const [key, versions] of bucket.objects) if (versions[0] && !versions[0].deleteMarker) keys.push(key);
  return keys.sort(byBytes);
}

function contents(
  bucket: Bucket,
  entries: Entry[],
  p: ListParams,
): { Contents: XmlTree[]; CommonPrefixes: XmlTree[] } {
  const Contents: XmlTree[] = [];
  const CommonPrefixes: XmlTree[] = [];
  for (const e of entries) {
    if (e.kind === 'prefix') {
      CommonPrefixes.push({ Prefix: p.encode(e.prefix) });
      continue;
    }
    const v = bucket.objects.get(e.key)?.[0] as ObjectVersion;
    Contents.push({
      Key: p.encode(e.key),
      LastModified: v.lastModified,
      ETag: v.etag,
      ...(v.checksum ? { ChecksumAlgorithm: v.checksum.algorithm } : {}),
      Size: v.size,
      StorageClass: 'STANDARD',
    });
  }
  return { Contents, CommonPrefixes };
}

const last = (e: Entry | undefined) => (e === undefined ? '' : e.kind === 'key' ? e.key : e.prefix);

export function listObjectsV2(ctx: Context): void {
  const bucket = bucketOf(ctx);
  const p = params(ctx);
  const q = ctx.target.query;
  const token = q.get('continuation-token') ?? undefined;
  let after = q.get('start-after') ?? '';
  if (token !== undefined) {
    const decoded = Buffer.from(token, 'base64url').toString('utf8');
    if (token === '' || Buffer.from(decoded).toString('base64url') !== token) {
      throw errors.invalidArgument(
        'The continuation token provided is incorrect',
        'continuation-token',
        token,
      );
    }
    after = decoded;
  }
  const { entries, truncated } = walk(liveKeys(bucket), p, after);
  const listed = contents(bucket, entries, p);
  const body = xmlDocument('ListBucketResult', {
    Name: bucket.name,
    Prefix: p.encode(p.prefix),
    Delimiter: p.delimiter === '' ? undefined : p.encode(p.delimiter),
    MaxKeys: p.maxKeys,
    KeyCount: entries.length,
    IsTruncated: truncated,
    EncodingType: p.encodingType,
    ContinuationToken: token,
    NextContinuationToken: truncated ? Buffer.from(last(entries.at(-1))).toString('base64url') : undefined,
    StartAfter: q.has('start-after') ? p.encode(q.get('start-after') ?? '') : undefined,
    ...listed,
  });
  send(ctx, 200, {}, body);
}

export function listObjectsV1(ctx: Context): void {
  const bucket = bucketOf(ctx);
  const p = params(ctx);
  const marker = ctx.target.query.get('marker') ?? '';
  const { entries, truncated } = walk(liveKeys(bucket), p, marker);
  const body = xmlDocument('ListBucketResult', {
    Name: bucket.name,
    Prefix: p.encode(p.prefix),
    Marker: p.encode(marker),
    NextMarker: truncated && p.delimiter !== '' ? p.encode(last(entries.at(-1))) : undefined,
    MaxKeys: p.maxKeys,
    Delimiter: p.delimiter === '' ? undefined : p.encode(p.delimiter),
    IsTruncated: truncated,
    EncodingType: p.encodingType,
    ...contents(bucket, entries, p),
  });
  send(ctx, 200, {}, body);
}

/** The page of a ListObjectVersions walk, filled up to maxKeys entries. */
class VersionPage {
  readonly Version: XmlTree[] = [];
  readonly DeleteMarker: XmlTree[] = [];
  readonly CommonPrefixes: XmlTree[] = [];
  truncated = false;
  /** The page's last entry: a version (key and id) or a common prefix (no id). */
  next: { key: string; versionId?: string } | undefined;
  private count = 0;
  private lastPrefix: string | undefined;

  constructor(
    private readonly p: ListParams,
    private readonly keyMarker: string,
    private readonly versionMarker: string,
  ) {}

  /** Adds a key's entries; false once the page is full. */
  addKey(key: string, versions: readonly ObjectVersion[]): boolean {
    if (!key.startsWith(this.p.prefix)) return true;
    const cmp = byBytes(key, this.keyMarker);
    if (cmp < 0 || (cmp === 0 && this.versionMarker === '')) return true;
    const prefix = commonPrefixOf(key, this.p);
    if (prefix !== undefined) return this.addPrefix(prefix);
    return this.addVersions(key, versions, cmp === 0);
  }

  private full(): boolean {
    if (this.count === this.p.maxKeys) this.truncated = true;
    return this.truncated;
  }

  private addPrefix(prefix: string): boolean {
    if (prefix === this.lastPrefix || this.keyMarker.startsWith(prefix)) return true;
    if (this.full()) return false;
    this.lastPrefix = prefix;
    this.CommonPrefixes.push({ Prefix: this.p.encode(prefix) });
    this.next = { key: prefix };
    this.count++;
    return true;
  }

  /** Newest first; on the marker's key, only the versions after the version marker. */
  private addVersions(key: string, versions: readonly ObjectVersion[], afterMarker: boolean): boolean {
    const start = afterMarker ? versions.findIndex((v) => v.versionId === this.versionMarker) + 1 : 0;
    if (afterMarker && start === 0) return true;
    for (const [i, v] of versions.entries()) {
      if (i < start) continue;
      if (this.full()) return false;
      const common = {
        Key: this.p.encode(key),
        VersionId: v.versionId,
        IsLatest: i === 0,
        LastModified: v.lastModified,
      };
      if (v.deleteMarker) this.DeleteMarker.push(common);
      else this.Version.push({ ...common, ETag: v.etag, Size: v.size, StorageClass: 'STANDARD' });
      this.next = { key, versionId: v.versionId };
      this.count++;
    }
    return true;
  }
}

/** ListObjectVersions: every version and delete marker, newest first per key. */
export function listObjectVersions(ctx: Context): void {
  const bucket = bucketOf(ctx);
  const p = params(ctx);
  const q = ctx.target.query;
  const keyMarker = q.get('key-marker') ?? '';
  const versionMarker = q.get('version-id-marker') ?? '';
  const page = new VersionPage(p, keyMarker, versionMarker);
  for (const key of [...bucket.objects.keys()].sort(byBytes)) {
    if (!page.addKey(key, bucket.objects.get(key) ?? [])) break;
  }
  const { truncated, next } = page;
  const body = xmlDocument('ListVersionsResult', {
    Name: bucket.name,
    Prefix: p.encode(p.prefix),
    KeyMarker: p.encode(keyMarker),
    VersionIdMarker: versionMarker,
    NextKeyMarker: truncated ? p.encode(next?.key ?? '') : undefined,
    NextVersionIdMarker: truncated ? next?.versionId : undefined,
    MaxKeys: p.maxKeys,
    Delimiter: p.delimiter === '' ? undefined : p.encode(p.delimiter),
    IsTruncated: truncated,
    EncodingType: p.encodingType,
    Version: page.Version,
    DeleteMarker: page.DeleteMarker,
    CommonPrefixes: page.CommonPrefixes,
  });
  send(ctx, 200, {}, body);
}

/** Uploads of one key sort by upload id, which sorts as they were initiated (`newUploadId`). */
const byKeyThenId = (a: Upload, b: Upload) => byBytes(a.key, b.key) || byBytes(a.uploadId, b.uploadId);

/**
 * After the markers: keys after key-marker, and on key-marker itself the uploads whose id
 * sorts after upload-id-marker (S3 compares the ids as strings, so an aborted marker still
 * resumes in place).
 */
function afterUploadMarker(u: Upload, keyMarker: string, uploadIdMarker: string): boolean {
  const cmp = byBytes(u.key, keyMarker);
  return cmp > 0 || (cmp === 0 && uploadIdMarker !== '' && byBytes(u.uploadId, uploadIdMarker) > 0);
}

type UploadEntry = { kind: 'upload'; upload: Upload } | { kind: 'prefix'; prefix: string };

function uploadPage(
  uploads: readonly Upload[],
  p: ListParams,
  keyMarker: string,
  uploadIdMarker: string,
): { entries: UploadEntry[]; truncated: boolean } {
  const entries: UploadEntry[] = [];
  let lastPrefix: string | undefined;
  for (const upload of uploads) {
    if (!upload.key.startsWith(p.prefix) || !afterUploadMarker(upload, keyMarker, uploadIdMarker)) continue;
    const prefix = commonPrefixOf(upload.key, p);
    // A key-marker inside (or equal to) a common prefix means that prefix was already returned.
    if (prefix !== undefined && (prefix === lastPrefix || keyMarker.startsWith(prefix))) continue;
    if (entries.length === p.maxKeys) return { entries, truncated: true };
    lastPrefix = prefix;
    entries.push(prefix === undefined ? { kind: 'upload', upload } : { kind: 'prefix', prefix });
  }
  return { entries, truncated: false };
}

/** ListMultipartUploads: in-progress uploads by key, then by initiation, with S3's markers and delimiter. */
export function listMultipartUploads(ctx: Context): void {
  const bucket = bucketOf(ctx);
  const p = params(ctx, 'max-uploads');
  const q = ctx.target.query;
  const keyMarker = q.get('key-marker') ?? '';
  // S3 ignores upload-id-marker without a key-marker.
  const uploadIdMarker = keyMarker === '' ? '' : (q.get('upload-id-marker') ?? '');
  const uploads = [...ctx.store.uploads.values()].filter((u) => u.bucket === bucket.name).sort(byKeyThenId);
  const { entries, truncated } = uploadPage(uploads, p, keyMarker, uploadIdMarker);
  const lastEntry = entries.at(-1);
  const body = xmlDocument('ListMultipartUploadsResult', {
    Bucket: bucket.name,
    KeyMarker: p.encode(keyMarker),
    UploadIdMarker: uploadIdMarker,
    NextKeyMarker:
      truncated && lastEntry
        ? p.encode(lastEntry.kind === 'prefix' ? lastEntry.prefix : lastEntry.upload.key)
        : undefined,
    Prefix: p.encode(p.prefix),
    Delimiter: p.delimiter === '' ? undefined : p.encode(p.delimiter),
    NextUploadIdMarker: truncated && lastEntry?.kind === 'upload' ? lastEntry.upload.uploadId : undefined,
    MaxUploads: p.maxKeys,
    IsTruncated: truncated,
    Upload: entries.flatMap((e) =>
      e.kind === 'upload'
        ? [
            {
              Key: p.encode(e.upload.key),
              UploadId: e.upload.uploadId,
              Initiated: e.upload.initiated,
              StorageClass: 'STANDARD',
              ChecksumAlgorithm: e.upload.checksumAlgorithm,
            },
          ]
        : [],
    ),
    CommonPrefixes: entries.flatMap((e) => (e.kind === 'prefix' ? [{ Prefix: p.encode(e.prefix) }] : [])),
    EncodingType: p.encodingType,
  });
  send(ctx, 200, {}, body);
}
