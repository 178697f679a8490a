/**
 * S3 adapters: the origin's content-addressed blobs and the replicas' files by path.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  ListPartsCommand,
  NotFound,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import pMap from 'p-map';
import { hashChunks } from '../../common/sha256-node.ts';
import { blobKey } from '../../contracts/ledger-keys.js';
import { MiB, S3_MAX_PART_BYTES, S3_MAX_PARTS } from '../../contracts/multipart.js';
import { REPLICA_COPY_RESUMABLE_DAYS } from '../../contracts/replica-copy.js';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import type {
  BlobGetOptions,
  BlobStore,
  CopyCheckpoint,
  CopyUpload,
  PresignPartInput,
  ReplicaStore,
  StoredPart,
} from '../core/ports.js';

export const hexToBase64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
export const base64ToHex = (b64: string) => Buffer.from(b64, 'base64').toString('hex');

/**
 * Checksums only where an operation requires them: a client with the default
 * (WHEN_SUPPORTED) presigns an empty-body CRC32 into every PUT URL (docs/platform.md).
 */
export function makeS3Client(
  options: { region: string; forcePathStyle: boolean } & Pick<S3ClientConfig, 'endpoint' | 'credentials'>,
): S3Client {
  return new S3Client({
    ...options,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

const DAY_MS = 24 * 60 * 60 * 1000;

function isNoSuchUpload(error: unknown): boolean {
  return (
    error instanceof S3ServiceException &&
    (error.name === 'NoSuchUpload' || error.$metadata.httpStatusCode === 404)
  );
}

function isNotFound(error: unknown): boolean {
  return (
    error instanceof NotFound ||
    (error instanceof S3ServiceException &&
      (error.$metadata.httpStatusCode === 404 || error.name === 'NoSuchKey'))
  );
}

/**
 * Object metadata naming the upload whose URL stored the bytes (signed into every PUT URL and set on
 * every multipart upload): the ingest commits that upload only, so a claim by hash alone never rides
 * on another client's bytes (docs/api.md, "Deduplication").
 */
const META_UPLOAD = 'mirror-upload';
const UPLOAD_HEADER = `x-amz-meta-${META_UPLOAD}`;

/**
 * Headers a PUT may send unsigned (S3 demands a signature for x-amz-* ones only) that S3 stores and
 * then answers every GET with, for every file that later shares the blob, and that change what a
 * reader gets: bytes stored gzip-encoded reach a browser decoded, as other bytes than the verified
 * ones; a stored disposition names another file; a cache-control or an expiry keeps another user's
 * file in caches for a year; a language changes how it is read (docs/design-notes.md, "Verification").
 */
const UNSIGNED_RESPONSE_HEADERS = [
  ['content-encoding', 'ContentEncoding'],
  ['content-disposition', 'ContentDisposition'],
  ['content-language', 'ContentLanguage'],
  ['expires', 'ExpiresString'],
  ['cache-control', 'CacheControl'],
] as const satisfies readonly (readonly [string, keyof HeadObjectCommandOutput])[];

/**
 * What a browser adds to a PUT itself, and changes nothing for a reader: `no-cache` (a fetch with
 * `cache: 'no-store'`, or the developer tools' cache off) and `max-age=0` (`cache: 'no-cache'`).
 */
const BROWSER_CACHE_CONTROL = new Set(['no-cache', 'max-age=0']);

/** The names of the unsigned response headers an object was stored with. */
function unsignedHeadersOf(out: HeadObjectCommandOutput): string[] {
  return UNSIGNED_RESPONSE_HEADERS.filter(([name, field]) => {
    const value = out[field];
    if (value === undefined || value === '') return false;
    return !(name === 'cache-control' && BROWSER_CACHE_CONTROL.has(String(value).trim().toLowerCase()));
  }).map(([name]) => name);
}

export class S3BlobStore implements BlobStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {}

  async stat(sha256: string, versionId?: string) {
    try {
      const out = await this.s3.send(
        new HeadObjectCommand({
          Bucket: this.bucket,
          Key: blobKey(sha256),
          VersionId: versionId,
          ChecksumMode: 'ENABLED',
        }),
      );
      const fullObject =
        out.ChecksumSHA256 !== undefined &&
        (out.ChecksumType ?? 'FULL_OBJECT') === 'FULL_OBJECT' &&
        !out.ChecksumSHA256.includes('-');
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag,
        versionId: out.VersionId,
        sha256: fullObject && out.ChecksumSHA256 ? base64ToHex(out.ChecksumSHA256) : undefined,
        lastModified: out.LastModified,
        uploadId: out.Metadata?.[META_UPLOAD],
        unsignedHeaders: unsignedHeadersOf(out),
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async hash(sha256: string, versionId?: string) {
    const out = await this.s3.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: blobKey(sha256), VersionId: versionId }),
    );
    return hashChunks(out.Body as Readable);
  }

  async delete(sha256: string, versionId?: string) {
    await this.s3.send(
      new DeleteObjectCommand({ Bucket: this.bucket, Key: blobKey(sha256), VersionId: versionId }),
    );
  }

  async readRange(sha256: string, offset: number, length: number, versionId?: string) {
    if (length === 0) return new Uint8Array();
    try {
      const out = await this.s3.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: blobKey(sha256),
          VersionId: versionId,
          Range: `bytes=${offset}-${offset + length - 1}`,
        }),
      );
      return await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    } catch (error) {
      if (isNotFound(error) || (error as { name?: string }).name === 'NoSuchVersion') return undefined;
      throw error;
    }
  }

  async presignPut(input: {
    sha256: string;
    size: number;
    contentType: string;
    expiresInSeconds: number;
    uploadId: string;
  }) {
    const checksum = hexToBase64(input.sha256);
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: blobKey(input.sha256),
      ContentLength: input.size,
      ContentType: input.contentType,
      ChecksumSHA256: checksum,
      Metadata: { [META_UPLOAD]: input.uploadId },
    });
    // Signed headers, not query parameters: the uploader must send exactly these values.
    const url = await getSignedUrl(this.s3, command, {
      expiresIn: input.expiresInSeconds,
      signableHeaders: new Set(['content-type', 'content-length', 'x-amz-checksum-sha256', UPLOAD_HEADER]),
      unhoistableHeaders: new Set(['content-type', 'x-amz-checksum-sha256', UPLOAD_HEADER]),
    });
    return {
      url,
      headers: {
        'content-length': String(input.size),
        'content-type': input.contentType,
        'x-amz-checksum-sha256': checksum,
        [UPLOAD_HEADER]: input.uploadId,
      },
    };
  }

  async presignGet(sha256: string, expiresInSeconds: number, options: BlobGetOptions) {
    return getSignedUrl(
      this.s3,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: blobKey(sha256),
        VersionId: options.versionId,
        ResponseContentType: options.contentType,
        ResponseContentDisposition: options.contentDisposition,
      }),
      { expiresIn: expiresInSeconds },
    );
  }

  async createMultipart(sha256: string, contentType: string, uploadId: string) {
    const out = await this.s3.send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: blobKey(sha256),
        ContentType: contentType,
        ChecksumAlgorithm: 'SHA256',
        Metadata: { [META_UPLOAD]: uploadId },
      }),
    );
    if (!out.UploadId) throw new Error(`S3 returned no UploadId for blobs/${sha256}`);
    return out.UploadId;
  }

  async presignPart(input: PresignPartInput) {
    const checksum = hexToBase64(input.partSha256);
    const url = await getSignedUrl(
      this.s3,
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: blobKey(input.sha256),
        UploadId: input.multipartId,
        PartNumber: input.partNumber,
        ContentLength: input.size,
        ChecksumSHA256: checksum,
      }),
      {
        expiresIn: input.expiresInSeconds,
        signableHeaders: new Set(['content-length', 'x-amz-checksum-sha256']),
        unhoistableHeaders: new Set(['x-amz-checksum-sha256']),
      },
    );
    return { url, headers: { 'content-length': String(input.size), 'x-amz-checksum-sha256': checksum } };
  }

  async completeMultipart(sha256: string, multipartId: string, parts: readonly StoredPart[]) {
    await this.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: blobKey(sha256),
        UploadId: multipartId,
        MultipartUpload: {
          Parts: parts.map((p) => ({
            PartNumber: p.partNumber,
            ETag: p.etag,
            ChecksumSHA256: hexToBase64(p.sha256),
          })),
        },
      }),
    );
  }

  async abortMultipart(sha256: string, multipartId: string) {
    await this.s3.send(
      new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: blobKey(sha256), UploadId: multipartId }),
    );
  }
}

/**
 * A key listed with `encoding-type=url`: the SDK hands it over as S3 encoded it. S3 writes a space
 * as `+` (and a `+` as `%2B`), as form encoding does, so `+` is read back as a space first.
 */
export function decodeListedKey(key: string): string {
  return decodeURIComponent(key.replaceAll('+', ' '));
}

/** CopyObject's `CopySource`: bucket and URL-encoded key, and `?versionId=` to copy that version only. */
export function copySource(bucket: string, key: string, versionId?: string): string {
  const path = `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  return versionId === undefined ? path : `${path}?versionId=${encodeURIComponent(versionId)}`;
}

const META_SHA256 = 'mirror-sha256';
const META_VERSION = 'mirror-version';

/** S3's single CopyObject limit. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;
const DEFAULT_COPY_PART_BYTES = 512 * MiB;
/**
 * Part copies run inside S3 (no bytes through the function), so several at once cost the function
 * little: a 50 GiB object is 100 parts, ~13 rounds of 8 instead of 100 one after another.
 */
const DEFAULT_COPY_CONCURRENCY = 8;

/**
 * The byte ranges of a multipart copy: `partBytes` each, grown when needed so that no object S3
 * can hold needs more than S3_MAX_PARTS parts (a 5 TiB object at 512 MiB would need 10,240).
 */
export function copyRanges(size: number, partBytes: number): { part: number; first: number; last: number }[] {
  const bytes = Math.min(S3_MAX_PART_BYTES, Math.max(partBytes, Math.ceil(size / S3_MAX_PARTS)));
  const ranges: { part: number; first: number; last: number }[] = [];
  for (let first = 0, part = 1; first < size; first += bytes, part++) {
    ranges.push({ part, first, last: Math.min(first + bytes, size) - 1 });
  }
  return ranges;
}

export class S3ReplicaStore implements ReplicaStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly keyPrefix: string,
    private readonly origin: { bucket: string },
    private readonly options: {
      multipartCopyAbove?: number;
      partBytes?: number;
      /** Part copies in flight at once. */
      copyConcurrency?: number;
      /** When a kept copy began and until when it may be continued. */
      now?: () => Date;
    } = {},
  ) {}

  private key(path: string) {
    return `${this.keyPrefix}${path}`;
  }

  /** The path an object under the key prefix stands for: the inverse of `key`. */
  private pathOf(key: string) {
    return key.slice(this.keyPrefix.length);
  }

  async stat(path: string) {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(path) }));
      const version = Number(out.Metadata?.[META_VERSION]);
      return {
        version: Number.isSafeInteger(version) ? version : undefined,
        sha256: out.Metadata?.[META_SHA256],
        size: out.ContentLength ?? 0,
        etag: out.ETag,
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async copyFromOrigin(
    message: ReplicationMessage & { sha256: string; sourceVersionId?: string | undefined },
    options: { signal?: AbortSignal; checkpoint?: CopyCheckpoint } = {},
  ) {
    const { signal, checkpoint } = options;
    const metadata = { [META_SHA256]: message.sha256, [META_VERSION]: String(message.version) };
    const source = copySource(this.origin.bucket, blobKey(message.sha256), message.sourceVersionId);
    const contentType = message.contentType ?? 'application/octet-stream';
    if (message.size > (this.options.multipartCopyAbove ?? MAX_SINGLE_COPY_BYTES)) {
      const etag = await this.multipartCopy(
        source,
        { ...message, metadata, contentType },
        signal,
        checkpoint,
      );
      // A multipart object has only a composite checksum: nothing full-object to confirm.
      return { storedSha256: undefined, etag };
    }
    // Not sent once the deadline came; once sent, never abandoned (see landsWhateverTheClient).
    signal?.throwIfAborted();
    const out = await this.s3.send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key: this.key(message.path),
        CopySource: source,
        MetadataDirective: 'REPLACE',
        Metadata: metadata,
        ContentType: contentType,
        ChecksumAlgorithm: 'SHA256',
      }),
    );
    const stored = out.CopyObjectResult?.ChecksumSHA256;
    return { storedSha256: stored ? base64ToHex(stored) : undefined, etag: out.CopyObjectResult?.ETag };
  }

  /**
   * landsWhateverTheClient: S3 carries out a `CopyObject` or a `CompleteMultipartUpload` it has
   * accepted even if the client then hangs up, so neither is sent with the deadline's signal: an
   * aborted call would look settled while its write may still land after a newer version's. Left
   * to finish, the call either settles within the grace or is still running when the invocation
   * answers, and then its record is not handed back before the visibility timeout
   * (handlers/fifo-groups.ts); a copy overtaken all the same puts the newest back (core/replicate.ts).
   * Part copies only add parts to an upload: those are aborted at once.
   *
   * A copy stopped by `signal` (the invocation's deadline) keeps its upload when a `checkpoint`
   * holds it: the next call for the same version lists the parts done and copies only the rest, so
   * one copy may span any number of invocations. The record lives in the ledger, not in the bucket:
   * S3 shows no upload's metadata before it completes, so nothing in the bucket could prove which
   * version and source bytes an upload holds. Any other failure aborts the upload, as does finding
   * a kept upload that is not this copy's.
   */
  private async multipartCopy(
    source: string,
    message: ReplicationMessage & { sha256: string; sourceVersionId?: string | undefined } & {
      metadata: Record<string, string>;
      contentType: string;
    },
    signal: AbortSignal | undefined,
    checkpoint: CopyCheckpoint | undefined,
  ): Promise<string | undefined> {
    const key = this.key(message.path);
    const ranges = copyRanges(message.size, this.options.partBytes ?? DEFAULT_COPY_PART_BYTES);
    const partBytes = ranges[0] ? ranges[0].last - ranges[0].first + 1 : 0;
    signal?.throwIfAborted();
    const kept = checkpoint && (await this.keptCopy(key, message, ranges, partBytes, checkpoint, signal));
    const uploadId = kept?.uploadId ?? (await this.startCopy(key, message, partBytes, signal, checkpoint));
    const done = kept?.parts ?? new Map<number, string | undefined>();
    // The first failed part, or the caller's signal (the invocation's deadline), stops the others in
    // flight.
    const abort = new AbortController();
    const stop = () => abort.abort(signal?.reason);
    signal?.addEventListener('abort', stop, { once: true });
    try {
      signal?.throwIfAborted();
      const copied = await pMap(
        ranges.filter((r) => !done.has(r.part)),
        async ({ part, first, last }) => {
          abort.signal.throwIfAborted();
          const out = await this.s3.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: part,
              CopySource: source,
              CopySourceRange: `bytes=${first}-${last}`,
            }),
            { abortSignal: abort.signal },
          );
          return { ETag: out.CopyPartResult?.ETag, PartNumber: part };
        },
        { concurrency: this.options.copyConcurrency ?? DEFAULT_COPY_CONCURRENCY },
      );
      const parts = [...[...done].map(([PartNumber, ETag]) => ({ PartNumber, ETag })), ...copied].sort(
        (a, b) => a.PartNumber - b.PartNumber,
      );
      // Not sent once the deadline came (the upload stays for the next delivery to complete); once
      // sent, never abandoned (see landsWhateverTheClient).
      abort.signal.throwIfAborted();
      const completed = await this.s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
      // The object is whole: a record left behind names an upload S3 no longer has, which the next
      // copy of the path finds gone and drops.
      await checkpoint?.clear(uploadId).catch(() => undefined);
      return completed.ETag;
    } catch (error) {
      abort.abort();
      if (checkpoint && signal?.aborted) throw error;
      await this.abortUpload(key, uploadId);
      await checkpoint?.clear(uploadId).catch(() => undefined);
      throw error;
    } finally {
      signal?.removeEventListener('abort', stop);
    }
  }

  /** Creates the upload and records it before any part is copied, so no kept upload goes unrecorded. */
  private async startCopy(
    key: string,
    message: ReplicationMessage & { sha256: string; sourceVersionId?: string | undefined } & {
      metadata: Record<string, string>;
      contentType: string;
    },
    partBytes: number,
    signal: AbortSignal | undefined,
    checkpoint: CopyCheckpoint | undefined,
  ): Promise<string> {
    const created = await this.s3.send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        Metadata: message.metadata,
        ContentType: message.contentType,
      }),
      { abortSignal: signal },
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error(`no UploadId creating a multipart copy of ${key}`);
    if (!checkpoint) return uploadId;
    const startedAt = (this.options.now ?? (() => new Date()))();
    const record: CopyUpload = {
      uploadId,
      version: message.version,
      sha256: message.sha256,
      sourceVersionId: message.sourceVersionId,
      partBytes,
      startedAt: startedAt.toISOString(),
      expiresAt: new Date(startedAt.getTime() + REPLICA_COPY_RESUMABLE_DAYS * DAY_MS).toISOString(),
    };
    try {
      await checkpoint.save(record);
    } catch (error) {
      await this.abortUpload(key, uploadId);
      throw error;
    }
    return uploadId;
  }

  /**
   * The kept upload of this very copy (same version, source bytes and part size, not expired, still
   * held by S3, its parts the sizes this copy cuts) with the parts it holds; any other kept upload
   * is aborted and forgotten, never completed.
   */
  private async keptCopy(
    key: string,
    message: { version: number; sha256: string; sourceVersionId?: string | undefined },
    ranges: readonly { part: number; first: number; last: number }[],
    partBytes: number,
    checkpoint: CopyCheckpoint,
    signal: AbortSignal | undefined,
  ): Promise<{ uploadId: string; parts: Map<number, string | undefined> } | undefined> {
    const kept = await checkpoint.load();
    if (!kept) return undefined;
    const now = (this.options.now ?? (() => new Date()))().getTime();
    const same =
      kept.version === message.version &&
      kept.sha256 === message.sha256 &&
      kept.sourceVersionId === message.sourceVersionId &&
      kept.partBytes === partBytes &&
      Date.parse(kept.expiresAt) > now;
    const parts = same ? await this.copiedParts(key, kept.uploadId, ranges, signal) : undefined;
    if (parts) return { uploadId: kept.uploadId, parts };
    await this.abortUpload(key, kept.uploadId);
    await checkpoint.clear(kept.uploadId);
    return undefined;
  }

  /** The parts an upload holds (number to ETag), or undefined if S3 lost it or a part does not fit. */
  private async copiedParts(
    key: string,
    uploadId: string,
    ranges: readonly { part: number; first: number; last: number }[],
    signal: AbortSignal | undefined,
  ): Promise<Map<number, string | undefined> | undefined> {
    const parts = new Map<number, string | undefined>();
    let marker: string | undefined;
    do {
      const out = await this.s3
        .send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumberMarker: marker,
          }),
          { abortSignal: signal },
        )
        .catch((error: unknown) => {
          if (isNoSuchUpload(error)) return undefined;
          throw error;
        });
      if (!out) return undefined;
      for (const part of out.Parts ?? []) {
        const range = part.PartNumber === undefined ? undefined : ranges[part.PartNumber - 1];
        if (!range || part.Size !== range.last - range.first + 1) return undefined;
        parts.set(range.part, part.ETag);
      }
      marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
    } while (marker !== undefined);
    return parts;
  }

  /** Best effort: an upload S3 no longer has, or one left to the bucket's lifecycle rule, costs nothing. */
  private async abortUpload(key: string, uploadId: string): Promise<void> {
    await this.s3
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }))
      .catch(() => undefined);
  }

  async delete(path: string) {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(path) }));
  }

  async list(options: { after?: string | undefined; limit: number }) {
    const out = await this.s3.send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        ...(this.keyPrefix === '' ? {} : { Prefix: this.keyPrefix }),
        MaxKeys: options.limit,
        ContinuationToken: options.after,
        // Keys written straight into the bucket may hold characters XML 1.0 cannot carry: encoded,
        // every key comes back.
        EncodingType: 'url',
      }),
    );
    const objects = (out.Contents ?? []).flatMap((o) => {
      if (o.Key === undefined) return [];
      const key = decodeListedKey(o.Key);
      return [{ key, path: this.pathOf(key) }];
    });
    return {
      objects,
      ...(out.IsTruncated && out.NextContinuationToken ? { next: out.NextContinuationToken } : {}),
    };
  }

  async presignGet(path: string, expiresInSeconds: number, options: Omit<BlobGetOptions, 'versionId'>) {
    return getSignedUrl(
      this.s3,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.key(path),
        ResponseContentType: options.contentType,
        ResponseContentDisposition: options.contentDisposition,
      }),
      { expiresIn: expiresInSeconds },
    );
  }
}
