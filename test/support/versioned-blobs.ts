/**
 * An in-memory origin bucket with S3's versioning semantics, for domain tests: every write
 * makes a new version (the current one is the latest), reads and deletes take a version id,
 * a delete without one removes the object (unversioned) or adds a delete marker (versioned).
 * It reports no stored checksum, so the ingest hashes what it reads, as with the emulators.
 */
import { createHash } from 'node:crypto';
import type { BlobStore } from '../../functions/core/ports.js';

interface StoredVersion {
  readonly versionId: string;
  readonly bytes: Buffer | undefined; // undefined: a delete marker
  readonly lastModified: Date;
  /** The upload that sent the bytes (S3's `x-amz-meta-mirror-upload`, signed into its URL). */
  readonly uploadId?: string | undefined;
}

const md5 = (bytes: Buffer) => `"${createHash('md5').update(bytes).digest('hex')}"`;

export class VersionedBlobs implements BlobStore {
  private readonly objects = new Map<string, StoredVersion[]>();
  private counter = 0;
  /** Every call, in order: what the code under test read, deleted or signed. */
  readonly calls: { op: string; sha256: string; versionId: string | undefined }[] = [];

  constructor(private readonly options: { versioned: boolean } = { versioned: true }) {}

  /**
   * Writes bytes at blobs/<sha256> as an uploader (or an attacker) would, through the URL of
   * `uploadId` when given; returns the new version id.
   */
  put(sha256: string, bytes: Buffer | string, uploadId?: string): string | undefined {
    const body = Buffer.from(bytes);
    const versionId = this.options.versioned ? `v${++this.counter}-${sha256.slice(0, 6)}` : undefined;
    const entry = { versionId: versionId ?? 'null', bytes: body, lastModified: new Date(), uploadId };
    const list = this.options.versioned ? (this.objects.get(sha256) ?? []) : [];
    list.push(entry);
    this.objects.set(sha256, list);
    return versionId;
  }

  /** Object versions (delete markers left out), oldest first. */
  versionsOf(sha256: string): { versionId: string; bytes: Buffer }[] {
    return (this.objects.get(sha256) ?? []).flatMap((v) =>
      v.bytes ? [{ versionId: v.versionId, bytes: v.bytes }] : [],
    );
  }

  /** The bytes a plain GET (no version id) would return. */
  current(sha256: string): Buffer | undefined {
    return this.objects.get(sha256)?.at(-1)?.bytes;
  }

  /** Removes a version behind the code's back (an operator, a lifecycle rule). */
  lose(sha256: string, versionId: string): void {
    const list = this.objects.get(sha256) ?? [];
    this.objects.set(
      sha256,
      list.filter((v) => v.versionId !== versionId),
    );
  }

  private find(sha256: string, versionId: string | undefined): StoredVersion | undefined {
    const list = this.objects.get(sha256) ?? [];
    const found = versionId === undefined ? list.at(-1) : list.find((v) => v.versionId === versionId);
    return found?.bytes ? found : undefined;
  }

  async stat(sha256: string, versionId?: string) {
    this.calls.push({ op: 'stat', sha256, versionId });
    const found = this.find(sha256, versionId);
    if (!found?.bytes) return undefined;
    return {
      size: found.bytes.length,
      etag: md5(found.bytes),
      versionId: this.options.versioned ? found.versionId : undefined,
      sha256: undefined,
      lastModified: found.lastModified,
      uploadId: found.uploadId,
    };
  }

  async hash(sha256: string, versionId?: string) {
    this.calls.push({ op: 'hash', sha256, versionId });
    const found = this.find(sha256, versionId);
    if (!found?.bytes) throw new Error(`NoSuchKey: blobs/${sha256} ${versionId ?? ''}`);
    return { sha256: createHash('sha256').update(found.bytes).digest('hex'), size: found.bytes.length };
  }

  async readRange(sha256: string, offset: number, length: number, versionId?: string) {
    this.calls.push({ op: 'readRange', sha256, versionId });
    const found = this.find(sha256, versionId);
    if (!found?.bytes) throw new Error(`NoSuchKey: blobs/${sha256} ${versionId ?? ''}`);
    return new Uint8Array(found.bytes.subarray(offset, offset + length));
  }

  async delete(sha256: string, versionId?: string) {
    this.calls.push({ op: 'delete', sha256, versionId });
    const list = this.objects.get(sha256) ?? [];
    if (versionId !== undefined) {
      this.objects.set(
        sha256,
        list.filter((v) => v.versionId !== versionId),
      );
    } else if (this.options.versioned) {
      list.push({ versionId: `marker-${++this.counter}`, bytes: undefined, lastModified: new Date() });
      this.objects.set(sha256, list);
    } else {
      this.objects.delete(sha256);
    }
  }

  async presignGet(
    sha256: string,
    _expiresInSeconds: number,
    { versionId }: { versionId?: string | undefined },
  ) {
    this.calls.push({ op: 'presignGet', sha256, versionId });
    return `https://origin.example/blobs/${sha256}${versionId === undefined ? '' : `?versionId=${versionId}`}`;
  }

  /** What a GET of a presigned URL from presignGet would return. */
  fetch(url: string): Buffer | undefined {
    const parsed = new URL(url);
    const sha256 = parsed.pathname.replace('/blobs/', '');
    return this.find(sha256, parsed.searchParams.get('versionId') ?? undefined)?.bytes;
  }

  async presignPut(): Promise<never> {
    throw new Error('not used by these tests');
  }
  async createMultipart(): Promise<never> {
    throw new Error('not used by these tests');
  }
  async presignPart(): Promise<never> {
    throw new Error('not used by these tests');
  }
  async completeMultipart(): Promise<never> {
    throw new Error('not used by these tests');
  }
  async abortMultipart(): Promise<never> {
    throw new Error('not used by these tests');
  }
}
