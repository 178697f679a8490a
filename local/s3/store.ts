/**
 * Storage of the local S3: buckets, object versions, multipart uploads.
 *
 * Keys are data, never paths: each version's bytes live in files named by random ids
 * (`blobs/<id>`), so no key, however many `..` it holds, reaches the file system.
 * The metadata index is a snapshot (`index.json`, written whole through a temp file and a
 * rename) and a journal (`index.log`): each `persist(...changes)` appends one line holding the
 * whole new state of what changed (a key's versions, a bucket's settings, a multipart upload).
 * Rewriting the whole index on every write cost O(objects) per PUT: 5.5% of the stack's main
 * thread in a 500-file bulk, and far more in a library of tens of thousands of files
 * (docs/local-sizing.md). Replaying a line twice gives the same state, so the journal is folded
 * into a new snapshot (once it outgrows the snapshot, and at each open) before it is emptied.
 * A crash leaves whole lines and at most one torn last line, which was never acknowledged and
 * is dropped on open. Bytes are renamed into `blobs/` before the index names them, and freed
 * only after the index stopped naming them; files no index names (a crash between the two)
 * are removed on open.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
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
  /**
   * Its LocationConstraint (`us-east-1` when none was given); requests must be signed for it.
   * Undefined for a bucket created before regions were kept: any region is taken there, so a data
   * folder of an earlier version goes on working.
   */
  readonly region: string | undefined;
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
    region?: string;
    versioning?: 'Enabled' | 'Suspended';
    cors?: CorsRule[];
    objects: [string, ObjectVersion[]][];
  }[];
  readonly uploads: (Omit<Upload, 'parts'> & { parts: Part[] })[];
}

type BucketSettings = Pick<IndexFile['buckets'][number], 'createdAt' | 'region' | 'versioning' | 'cors'>;

/** What a `persist` call changed; the journal records each one's whole new state. */
export type StoreChange =
  | { readonly bucket: string }
  | { readonly object: readonly [bucket: string, key: string] }
  | { readonly upload: string };

/** One journal entry: the new state, or null for gone. */
type JournalEntry =
  | {
      readonly bucket: string;
      readonly settings: Pick<
        IndexFile['buckets'][number],
        'createdAt' | 'region' | 'versioning' | 'cors'
      > | null;
    }
  | { readonly object: readonly [string, string]; readonly versions: ObjectVersion[] | null }
  | { readonly upload: string; readonly state: IndexFile['uploads'][number] | null };

/** A bucket's settings as the snapshot and the journal keep them (absent ones left out). */
function settingsOf(b: Bucket): BucketSettings {
  return {
    createdAt: b.createdAt,
    ...(b.region ? { region: b.region } : {}),
    ...(b.versioning ? { versioning: b.versioning } : {}),
    ...(b.cors ? { cors: [...b.cors] } : {}),
  };
}

/** The journal is folded into the snapshot once it is this big and bigger than the snapshot. */
const FOLD_MIN_BYTES = 4 * 1024 * 1024;

/** S3-like version ids: 32 URL-safe characters. */
export const newVersionId = () => randomBytes(24).toString('base64url');

export class S3Store {
  readonly buckets = new Map<string, Bucket>();
  readonly uploads = new Map<string, Upload>();
  private generation = 0;
  private written = 0;
  private flushing: Promise<void> | undefined;
  /** Journal lines not yet appended, in call order. */
  private pending: string[] = [];
  private journalBytes = 0;
  private snapshotBytes = 0;
  /** Blobs being read (GETs and copies in flight), with how many readers each. */
  private readonly readers = new Map<string, number>();
  /** Blobs the index stopped naming while read: deleted when their last reader lets go. */
  private readonly doomed = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly foldMinBytes: number,
  ) {}

  /** @param options.foldMinBytes the journal's size from which it may be folded (tests). @default 4 MiB */
  static async open(dir: string, options: { foldMinBytes?: number } = {}): Promise<S3Store> {
    const store = new S3Store(dir, options.foldMinBytes ?? FOLD_MIN_BYTES);
    await mkdir(join(dir, 'blobs'), { recursive: true });
    await rm(join(dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await store.load();
    await store.replayJournal();
    // A fresh snapshot, and an empty journal: no torn line stays for the next one to follow.
    await store.writeSnapshot();
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
        region: b.region,
        versioning: b.versioning,
        cors: b.cors,
        objects: new Map(b.objects),
      });
    }
    for (const u of index.uploads) {
      this.uploads.set(u.uploadId, { ...u, parts: new Map(u.parts.map((p) => [p.partNumber, p])) });
    }
  }

  private async replayJournal(): Promise<void> {
    const file = join(this.dir, 'index.log');
    let raw: string;
    try {
      raw = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const lines = raw.split('\n');
    // The last piece is empty after a whole last line; anything else there is a torn append.
    lines.pop();
    for (const [i, line] of lines.entries()) {
      let entries: JournalEntry[];
      try {
        entries = JSON.parse(line) as JournalEntry[];
      } catch {
        throw new Error(`${file}: line ${i + 1} is not JSON (the journal is damaged)`);
      }
      for (const entry of entries) this.apply(entry);
    }
  }

  private apply(entry: JournalEntry): void {
    if ('settings' in entry) {
      if (entry.settings === null) this.buckets.delete(entry.bucket);
      else {
        const { createdAt, region, versioning, cors } = entry.settings;
        const objects = this.buckets.get(entry.bucket)?.objects ?? new Map<string, ObjectVersion[]>();
        this.buckets.set(entry.bucket, { name: entry.bucket, createdAt, region, versioning, cors, objects });
      }
    } else if ('versions' in entry) {
      const [bucketName, key] = entry.object;
      const bucket = this.buckets.get(bucketName);
      if (bucket === undefined) return;
      if (entry.versions === null) bucket.objects.delete(key);
      else bucket.objects.set(key, entry.versions);
    } else if (entry.state === null) this.uploads.delete(entry.upload);
    else {
      const u = entry.state;
      this.uploads.set(u.uploadId, { ...u, parts: new Map(u.parts.map((p) => [p.partNumber, p])) });
    }
  }

  /** The whole new state of what `change` names, as the journal keeps it. */
  private entry(change: StoreChange): JournalEntry {
    if ('bucket' in change) {
      const b = this.buckets.get(change.bucket);
      return {
        bucket: change.bucket,
        settings: b === undefined ? null : settingsOf(b),
      };
    }
    if ('object' in change) {
      const [bucket, key] = change.object;
      const versions = this.buckets.get(bucket)?.objects.get(key);
      return { object: change.object, versions: versions === undefined ? null : [...versions] };
    }
    const u = this.uploads.get(change.upload);
    return { upload: change.upload, state: u === undefined ? null : { ...u, parts: [...u.parts.values()] } };
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
    const release = this.pin([blob]);
    try {
      await copyFile(join(this.dir, 'blobs', blob), join(this.dir, 'blobs', id));
    } finally {
      release();
    }
    return id;
  }

  /**
   * Reads `[start, end]` (inclusive) of an object's bytes across its segments. Its blobs are kept
   * from the moment of the call until the read ends, however it ends: a version overwritten or
   * deleted meanwhile is read whole, as on S3 (a multipart object's segments open one by one).
   */
  read(segments: readonly Segment[], start: number, end: number): AsyncIterableIterator<Buffer> {
    const release = this.pin(segments.map((s) => s.blob));
    const inner = this.readSegments(segments, start, end);
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        try {
          const result = await inner.next();
          if (result.done) release();
          return result;
        } catch (err) {
          release();
          throw err;
        }
      },
      async return(value?: unknown) {
        try {
          return await inner.return(value);
        } finally {
          release();
        }
      },
      async throw(err?: unknown) {
        try {
          return await inner.throw(err);
        } finally {
          release();
        }
      },
    };
  }

  private async *readSegments(
    segments: readonly Segment[],
    start: number,
    end: number,
  ): AsyncGenerator<Buffer> {
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

  /** Keeps blobs from being deleted until the returned function is called (once is enough). */
  private pin(blobs: readonly string[]): () => void {
    for (const blob of blobs) this.readers.set(blob, (this.readers.get(blob) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const blob of blobs) {
        const left = (this.readers.get(blob) ?? 1) - 1;
        if (left > 0) {
          this.readers.set(blob, left);
          continue;
        }
        this.readers.delete(blob);
        // A file left by a failed delete is an orphan the next start removes (load()).
        if (this.doomed.delete(blob)) rm(join(this.dir, 'blobs', blob), { force: true }).catch(() => {});
      }
    };
  }

  /** Frees blobs the index no longer names; call after `persist(...)`. A blob being read goes after its read. */
  async free(blobs: readonly string[]): Promise<void> {
    for (const blob of blobs) {
      if (this.readers.has(blob)) this.doomed.add(blob);
      else await rm(join(this.dir, 'blobs', blob), { force: true });
    }
  }

  /**
   * Records what changed (just before the call) in the journal, in one line; every change
   * recorded before the call is on disk when it resolves. Concurrent callers share appends.
   */
  async persist(...changes: [StoreChange, ...StoreChange[]]): Promise<void> {
    this.pending.push(JSON.stringify(changes.map((c) => this.entry(c))));
    await this.flushed();
  }

  /** Resolves when every change recorded so far is on disk. */
  async flushed(): Promise<void> {
    const mine = ++this.generation;
    while (this.written < mine) {
      if (this.flushing) {
        await this.flushing;
        continue;
      }
      const generation = this.generation;
      this.flushing = this.flush()
        .then(() => {
          this.written = Math.max(this.written, generation);
        })
        .finally(() => {
          this.flushing = undefined;
        });
    }
  }

  private async flush(): Promise<void> {
    const lines = this.pending.splice(0);
    if (lines.length === 0) return;
    const text = `${lines.join('\n')}\n`;
    // No fsync: a crash of the process leaves whole lines and at most a torn last one; surviving a
    // power cut is not worth ~15 ms per write on a developer's machine.
    await appendFile(join(this.dir, 'index.log'), text);
    this.journalBytes += Buffer.byteLength(text);
    if (this.journalBytes >= Math.max(this.foldMinBytes, this.snapshotBytes)) await this.writeSnapshot();
  }

  /**
   * Writes the whole index as the snapshot, then empties the journal. It holds every change in
   * memory, those still pending too: their lines, appended later, replay to the same state.
   */
  private async writeSnapshot(): Promise<void> {
    const index: IndexFile = {
      format: 1,
      buckets: [...this.buckets.values()].map((b) => ({
        name: b.name,
        ...settingsOf(b),
        objects: [...b.objects.entries()],
      })),
      uploads: [...this.uploads.values()].map((u) => ({ ...u, parts: [...u.parts.values()] })),
    };
    const text = JSON.stringify(index);
    const tmp = join(this.dir, `index.json.${randomUUID()}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, join(this.dir, 'index.json'));
    await writeFile(join(this.dir, 'index.log'), '');
    this.snapshotBytes = Buffer.byteLength(text);
    this.journalBytes = 0;
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
