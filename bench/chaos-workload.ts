/**
 * The chaos run's workload (docs/chaos.md): a seeded plan of uploads (new paths, paths already
 * written, some with content already stored: deduplicated) and deletes, and its execution
 * through the CLI's upload flow, as a user's `media-mirror put` would do it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPartSender } from '../cli/multipart.ts';
import { createPutFile } from '../cli/put-file.ts';
import { systemClock, uploadFile } from '../cli/upload.ts';
import { MirrorApi } from '../web/client/api.ts';

export interface WorkloadOptions {
  readonly uploads: number;
  readonly maxBytes: number;
  readonly seed: number;
  /** Share of uploads to a path already written. @default 0.2 */
  readonly overwrite?: number;
  /** Share of operations that delete a written path. @default 0.05 */
  readonly deletes?: number;
  /** Share of uploads whose bytes an earlier upload sent. @default 0.1 */
  readonly dedup?: number;
}

export interface Content {
  readonly id: number;
  readonly size: number;
  readonly sha256: string;
  readonly file: string;
}

export type Op =
  | { readonly kind: 'upload'; readonly path: string; readonly content: Content; readonly reused: boolean }
  | { readonly kind: 'delete'; readonly path: string };

/** What an operation came to, as the API answered. */
export interface OpResult {
  readonly op: Op;
  /** The upload's id (uploads), once claimed. */
  uploadId?: string;
  /** The version the API gave (a delete, a deduplicated upload); others are read back later. */
  version?: number;
  deduplicated?: boolean;
  /** Refused or failed at the API: it should have changed nothing. */
  error?: string;
}

/** mulberry32: small, seeded, good enough to make a run repeatable. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 0 bytes now and then, otherwise log-uniform from 1 byte to `max`: many small files, a few large. */
function sizeOf(rng: () => number, max: number): number {
  if (rng() < 0.03) return 0;
  return Math.max(1, Math.floor(Math.exp(rng() * Math.log(max))));
}

const pick = <T>(rng: () => number, items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;

/** Writes the contents to `dir` and returns the operations in order. */
export async function planWorkload(options: WorkloadOptions, dir: string, run: string): Promise<Op[]> {
  const rng = seeded(options.seed);
  const written: string[] = [];
  const contents: Content[] = [];
  const ops: Op[] = [];
  let uploads = 0;
  while (uploads < options.uploads) {
    if (written.length > 0 && rng() < (options.deletes ?? 0.05)) {
      ops.push({ kind: 'delete', path: pick(rng, written) });
      continue;
    }
    const path = pathFor(
      rng,
      written,
      options.overwrite ?? 0.2,
      `chaos/${run}/${String(uploads).padStart(4, '0')}.bin`,
    );
    const reused = contents.length > 0 && rng() < (options.dedup ?? 0.1);
    const content = reused
      ? pick(rng, contents)
      : await newContent(dir, contents.length, rng, options.maxBytes);
    if (!reused) contents.push(content);
    ops.push({ kind: 'upload', path, content, reused });
    uploads++;
  }
  return ops;
}

/** A path already written (at the overwrite rate), else the fresh one, remembered as written. */
function pathFor(rng: () => number, written: string[], overwrite: number, fresh: string): string {
  if (written.length > 0 && rng() < overwrite) return pick(rng, written);
  written.push(fresh);
  return fresh;
}

async function newContent(dir: string, id: number, rng: () => number, max: number): Promise<Content> {
  const bytes = randomBytes(sizeOf(rng, max));
  const file = join(dir, `content-${id}.bin`);
  await writeFile(file, bytes);
  return { id, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), file };
}

const quietProgress = { phase: () => undefined, bytes: () => undefined, stop: () => undefined } as never;

/** Runs the operations `concurrency` at a time; `onProgress` hears after each one. */
export async function runWorkload(
  endpoints: { readonly api: string; readonly token: string },
  ops: readonly Op[],
  options: { concurrency: number; onProgress?: (done: number) => Promise<void> | void },
): Promise<OpResult[]> {
  const client = new MirrorApi({ baseUrl: endpoints.api, token: endpoints.token });
  const deps = {
    client,
    putFile: createPutFile(),
    sendParts: createPartSender(client),
    clock: systemClock,
    progress: quietProgress,
  };
  const results: OpResult[] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < ops.length; i = next++) {
      const op = ops[i] as Op;
      results[i] = await runOp(client, deps, op);
      done++;
      await options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return results;
}

/**
 * A delete waits (a while) for its path's first commit, as a user deletes what they see; a path
 * still not committed by then is deleted anyway and refused (404), changing nothing.
 */
async function untilCommitted(client: MirrorApi, path: string, seconds = 30): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try {
      await client.getFile(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * The client, noting the id of the upload it claims: a call after the claim may fail (the api died
 * after committing it) and the error need not name the upload, whose outcome still counts.
 */
function recordingClaims<C extends Pick<MirrorApi, 'createUpload'>>(
  client: C,
  claimed: { uploadId?: string },
): C {
  return new Proxy(client, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (property !== 'createUpload') return value.bind(target);
      return async (...args: Parameters<MirrorApi['createUpload']>) => {
        const created = await target.createUpload(...args);
        claimed.uploadId = created.uploadId;
        return created;
      };
    },
  });
}

/** The upload's bytes are stored and its short wait for the verdict ran out: it is pending, not refused. */
const isWaitTimeout = (error: unknown) =>
  (error as Error).name === 'UploadTimeoutError' || (error as { code?: unknown }).code === 'verify_timeout';

/**
 * What a failed operation came to: an upload whose short wait for its verdict ran out is pending
 * (the run waits for it), anything else failed at the API; either keeps the upload's id when known.
 */
export function failedOp(op: Op, error: unknown, claimedUploadId: string | undefined): OpResult {
  const uploadId = (error as { uploadId?: unknown }).uploadId ?? claimedUploadId;
  if (typeof uploadId === 'string' && isWaitTimeout(error)) return { op, uploadId };
  return {
    op,
    ...(typeof uploadId === 'string' ? { uploadId } : {}),
    error: `${(error as Error).name}: ${(error as Error).message}`,
  };
}

async function runOp(client: MirrorApi, deps: Parameters<typeof uploadFile>[0], op: Op): Promise<OpResult> {
  const claimed: { uploadId?: string } = {};
  try {
    if (op.kind === 'delete') {
      await untilCommitted(client, op.path);
      const out = await client.deleteFile(op.path);
      return { op, version: out.version };
    }
    // Not waiting: under faults a commit may take until the run's repair phase.
    const out = await uploadFile(
      { ...deps, client: recordingClaims(deps.client, claimed) },
      {
        file: op.content.file,
        path: op.path,
        contentType: 'application/octet-stream',
        wait: false,
        timeoutSeconds: 5,
      },
    );
    return {
      op,
      uploadId: out.uploadId,
      deduplicated: out.deduplicated,
      ...(out.version === null ? {} : { version: out.version }),
    };
  } catch (error) {
    return failedOp(op, error, claimed.uploadId);
  }
}
