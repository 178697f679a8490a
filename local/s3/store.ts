/**
 * Storage of the local S3: buckets, object versions, multipart uploads.
 *
 * Keys are data, never paths: each version's bytes live in files named by random ids
 * (`blobs/<id>`), so no key, however many `..` it holds, reaches the file system.
 * The metadata index is one JSON document (`index.json`), rewritten whole through a temp
 * file and a rename, so a crash of the process leaves the old or the new index, never half of one;
 * bytes are renamed into `blobs/` before the index names them, and freed only after the
 * index stopped naming them. Files no index names (a crash between the two) are removed
 * on open.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'SHA1' | 'SHA256';

export interface StoredChecksum {
  readonly algorithm: ChecksumAlgorithm;
  /** Base64; a composite one ends with `-<parts>`. */
  readonly value: string;
  readonly type: 'FULL_OBJECT' | 'COMPOSITE';
}

/** A stretch of an object's bytes: one file (a single PUT has one, a multipart object one per part). */
export interface Segment {
  readonly blob: string;
  readonly size: number;
}

export interface ObjectVersion {
  /** `null` in a bucket that never had versioning enabled (S3's "null" version). */
  readonly versionId: string;
  readonly deleteMarker: boolean;
  readonly segments: readonly Segment[];
  readonly size: number;
  /** Quoted, as S3 sends it. */
  readonly etag: string;
  readonly lastModified: string;
  readonly contentType: string | undefined;
  /** Content-Encoding, Content-Disposition, Cache-Control, Content-Language, Expires. */
  readonly headers: readonly (readonly [string, string])[];
  /** `x-amz-meta-*` without the prefix, names lower-case. */
  readonly metadata: readonly (readonly [string, string])[];
  readonly checksum: StoredChecksum | undefined;
  /** How many parts a multipart object was completed from (`x-amz-mp-parts-count`). */
  readonly parts: number | undefined;
}

export interface CorsRule {
  readonly allowedOrigins: readonly string[];
  readonly allowedMethods: readonly string[];
  readonly allowedHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds: number | undefined;
}

export interface Bucket {
  readonly name: string;
  readonly createdAt: string;
  versioning: 'Enabled' | 'Suspended' | undefined;
  cors: readonly CorsRule[] | undefined;
  /** Per key, newest version first. */
  readonly objects: Map<string, ObjectVersion[]>;
}

export interface Part {
  readonly partNumber: number;
  readonly segment: Segment;
  readonly etag: string;
  readonly checksum: { readonly algorithm: ChecksumAlgorithm; readonly value: string } | undefined;
  readonly lastModified: string;
}

export interface Upload {
  readonly uploadId: string;
  readonly bucket: string;
  readonly key: string;
  readonly initiated: string;
  readonly contentType: string | undefined;
  readonly headers: readonly (readonly [string, string])[];
  readonly metadata: readonly (readonly [string, string])[];
  readonly checksumAlgorithm: ChecksumAlgorithm | undefined;
  readonly parts: Map<number, Part>;
}

interface IndexFile {
  readonly format: 1;
  readonly buckets: {
    name: string;
    createdAt: string;
    versioning?: 'Enabled' | 'Suspended';
    cors?: CorsRule[];
    objects: [string, ObjectVersion[]][];
  }[];
  readonly uploads: (Omit<Upload, 'parts'> & { parts: Part[] })[];
}

/** S3-like version ids: 32 URL-safe characters. */
export const newVersionId = () => randomBytes(24).toString('base64url');

export class S3Store {
  readonly buckets = new Map<string, Bucket>();
  readonly uploads = new Map<string, Upload>();
  private generation = 0;
  private written = 0;
  private flushing: Promise<void> | undefined;

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<S3Store> {
    const store = new S3Store(dir);
    await mkdir(join(dir, 'blobs'), { recursive: true });
    await rm(join(dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await store.load();
    await store.removeUnnamedBlobs();
    return store;
  }

  private async load(): Promise<void> {
    let raw: string;
    try {
      raw = await readFile(join(this.dir, 'index.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const index = JSON.parse(raw) as IndexFile;
    if (index.format !== 1)
      throw new Error(`${join(this.dir, 'index.json')}: unknown format ${index.format}`);
    for (const b of index.buckets) {
      this.buckets.set(b.name, {
        name: b.name,
        createdAt: b.createdAt,
        versioning: b.versioning,
        cors: b.cors,
        objects: new Map(b.objects),
      });
    }
    for (const u of index.uploads) {
      this.uploads.set(u.uploadId, { ...u, parts: new Map(u.parts.map((p) => [p.partNumber, p])) });
    }
  }

  private namedBlobs(): Set<string> {
    const named = new Set<string>();
    for (const bucket of this.buckets.values()) {
      for (const versions of bucket.objects.values()) {
        for (const v of versions) for (const s of v.segments) named.add(s.blob);
      }
    }
    for (const upload of this.uploads.values())
      for (const p of upload.parts.values()) named.add(p.segment.blob);
    return named;
  }

  private async removeUnnamedBlobs(): Promise<void> {
    const named = this.namedBlobs();
    for (const file of await readdir(join(this.dir, 'blobs'))) {
      if (!named.has(file)) await rm(join(this.dir, 'blobs', file), { force: true });
    }
  }

  /** Where a request's bytes go while they arrive (never visible until adopted). */
  tempFile(): { id: string; path: string } {
    const id = randomUUID();
    return { id, path: join(this.dir, 'tmp', id) };
  }

  /** Moves a finished temp file into `blobs/`; the caller then names it in the index. */
  async adopt(id: string): Promise<void> {
    await rename(join(this.dir, 'tmp', id), join(this.dir, 'blobs', id));
  }

  async discardTemp(id: string): Promise<void> {
    await rm(join(this.dir, 'tmp', id), { force: true });
  }

  /** Copies a blob to a new one (copies own their bytes, so deleting one never touches another). */
  async duplicate(blob: string): Promise<string> {
    const id = randomUUID();
    await copyFile(join(this.dir, 'blobs', blob), join(this.dir, 'blobs', id));
    return id;
  }

  /** Reads `[start, end]` (inclusive) of an object's bytes across its segments. */
  async *read(segments: readonly Segment[], start: number, end: number): AsyncGenerator<Buffer> {
    let offset = 0;
    for (const segment of segments) {
      const segStart = offset;
      const segEnd = offset + segment.size - 1;
      offset += segment.size;
      if (segment.size === 0 || segEnd < start || segStart > end) continue;
      const stream: Readable = createReadStream(join(this.dir, 'blobs', segment.blob), {
        start: Math.max(start, segStart) - segStart,
        end: Math.min(end, segEnd) - segStart,
        highWaterMark: 1024 * 1024,
      });
      for await (const chunk of stream) yield chunk as Buffer;
    }
  }

  /** Frees blobs the index no longer names; call after `persist()`. */
  async free(blobs: readonly string[]): Promise<void> {
    for (const blob of blobs) await rm(join(this.dir, 'blobs', blob), { force: true });
  }

  /**
   * Writes the index so that every change made before the call is on disk when it
   * resolves. Concurrent callers share writes.
   */
  async persist(): Promise<void> {
    const mine = ++this.generation;
    while (this.written < mine) {
      if (this.flushing) {
        await this.flushing;
        continue;
      }
      const generation = this.generation;
      this.flushing = this.writeIndex()
        .then(() => {
          this.written = Math.max(this.written, generation);
        })
        .finally(() => {
          this.flushing = undefined;
        });
    }
  }

  private async writeIndex(): Promise<void> {
    const index: IndexFile = {
      format: 1,
      buckets: [...this.buckets.values()].map((b) => ({
        name: b.name,
        createdAt: b.createdAt,
        ...(b.versioning ? { versioning: b.versioning } : {}),
        ...(b.cors ? { cors: [...b.cors] } : {}),
        objects: [...b.objects.entries()],
      })),
      uploads: [...this.uploads.values()].map((u) => ({ ...u, parts: [...u.parts.values()] })),
    };
    const tmp = join(this.dir, `index.json.${randomUUID()}.tmp`);
    // No fsync: the rename makes a crash of the process leave the old or the new index;
    // surviving a power cut is not worth ~15 ms per write on a developer's machine.
    await writeFile(tmp, JSON.stringify(index));
    await rename(tmp, join(this.dir, 'index.json'));
  }

  // ------------------------------------------------------------ versions

  /**
   * Adds a version as the key's current one, following the bucket's versioning state:
   * enabled: a new version id; never enabled or suspended: replaces the `null` version.
   * Returns the version stored and the blobs it made unnamed.
   */
  putVersion(
    bucket: Bucket,
    key: string,
    fields: Omit<ObjectVersion, 'versionId' | 'lastModified'>,
  ): { version: ObjectVersion; freed: string[] } {
    const versions = bucket.objects.get(key) ?? [];
    const freed: string[] = [];
    let versionId = 'null';
    if (bucket.versioning === 'Enabled') versionId = newVersionId();
    else {
      const i = versions.findIndex((v) => v.versionId === 'null');
      if (i >= 0) {
        const [old] = versions.splice(i, 1);
        for (const s of old?.segments ?? []) freed.push(s.blob);
      }
    }
    const version: ObjectVersion = { ...fields, versionId, lastModified: new Date().toISOString() };
    versions.unshift(version);
    bucket.objects.set(key, versions);
    return { version, freed };
  }

  /** Removes one version; returns it (undefined if absent) and the blobs it made unnamed. */
  removeVersion(
    bucket: Bucket,
    key: string,
    versionId: string,
  ): { removed?: ObjectVersion; freed: string[] } {
    const versions = bucket.objects.get(key);
    const i = versions?.findIndex((v) => v.versionId === versionId) ?? -1;
    if (!versions || i < 0) return { freed: [] };
    const [removed] = versions.splice(i, 1);
    if (versions.length === 0) bucket.objects.delete(key);
    return { removed, freed: removed?.segments.map((s) => s.blob) ?? [] };
  }

  /** The current version, or undefined when there is none or it is a delete marker. */
  current(bucket: Bucket, key: string): ObjectVersion | undefined {
    const head = bucket.objects.get(key)?.[0];
    return head?.deleteMarker ? undefined : head;
  }

  version(bucket: Bucket, key: string, versionId: string): ObjectVersion | undefined {
    return bucket.objects.get(key)?.find((v) => v.versionId === versionId);
  }
}
