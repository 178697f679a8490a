/**
 * The bench's clients: uploads through the local stack's API as a browser makes them
 * (declare, then PUT to the presigned URL), a pool of them at once, and watchers that see
 * when each path has reached each target (S3 listings; the agent's folder).
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { sleep } from '../common/retry.ts';
import { localApi, sha256Hex } from '../test/support/local-api.ts';
import type { BenchStack } from './stack.ts';

export interface BenchFile {
  readonly path: string;
  readonly bytes: Buffer;
}

export const makeFiles = (prefix: string, n: number, size: number): BenchFile[] =>
  Array.from({ length: n }, (_, i) => ({
    path: `${prefix}/${String(i).padStart(5, '0')}.bin`,
    bytes: randomBytes(size),
  }));

export interface Declared {
  /** The upload's id: its status is `GET /v1/uploads/{id}` (bench/committed.ts asks it). */
  readonly uploadId: string;
  readonly url: string;
  /** The headers the PUT must carry (content-length left to fetch). */
  readonly headers: Record<string, string>;
}

/** A stack this loaded may answer 503 or 429 for a moment: a client retries those a few times. */
async function retried<T>(
  what: string,
  fn: () => Promise<{ status: number; value: T; detail: string }>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const { status, value, detail } = await fn();
    if (status >= 200 && status < 300) return value;
    if (attempt >= 6 || (status < 500 && status !== 429)) throw new Error(`${what}: ${status} ${detail}`);
    await sleep(250 * attempt);
  }
}

/** Declares a file through the API (201: its bytes are wanted). */
export function declare(stack: Pick<BenchStack, 'endpoints'>, file: BenchFile): Promise<Declared> {
  const api = localApi(stack.endpoints);
  const body = {
    path: file.path,
    size: file.bytes.length,
    sha256: sha256Hex(file.bytes),
    contentType: 'application/octet-stream',
  };
  return retried(`declare ${file.path}`, async () => {
    const created = await api.call('POST', '/v1/uploads', body);
    if (created.status !== 201)
      return {
        status: created.status === 200 ? 409 : created.status,
        value: undefined as never,
        detail: JSON.stringify(created.body),
      };
    const { 'content-length': _length, ...headers } = created.body.upload.headers as Record<string, string>;
    return {
      status: 201,
      value: { uploadId: created.body.uploadId as string, url: created.body.upload.url as string, headers },
      detail: '',
    };
  });
}

/** PUTs the bytes to the presigned URL; resolves when S3 answered, with that time. */
export function put(declared: Declared, file: BenchFile): Promise<number> {
  return retried(`PUT ${file.path}`, async () => {
    const out = await fetch(declared.url, {
      method: 'PUT',
      headers: declared.headers,
      body: new Uint8Array(file.bytes),
    });
    await out.arrayBuffer();
    return { status: out.status, value: performance.now(), detail: '' };
  });
}

/** One upload; resolves when the bytes are in the origin bucket (the PUT answered), with that time. */
export async function uploadOne(stack: BenchStack, file: BenchFile): Promise<number> {
  return put(await declare(stack, file), file);
}

/** Uploads every file, `clients` at a time; returns each path's PUT-answered time. */
export async function uploadAll(
  stack: BenchStack,
  files: readonly BenchFile[],
  clients: number,
): Promise<Map<string, number>> {
  const done = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const file = files[next++] as BenchFile;
      done.set(file.path, await uploadOne(stack, file));
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  return done;
}

async function listKeys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of out.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys;
}

async function listFiles(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
  } catch {
    return [];
  }
}

/** A target as the bench sees it: the paths it holds under a prefix. */
export interface TargetProbe {
  readonly id: string;
  paths(prefix: string): Promise<string[]>;
}

export function targetProbes(stack: BenchStack, withAgent: boolean): TargetProbe[] {
  const probes: TargetProbe[] = stack.s3Targets.map((t) => ({
    id: t.id,
    paths: async (prefix) =>
      (await listKeys(stack.s3(t.bucket), t.bucket, t.keyPrefix + prefix)).map((k) =>
        k.slice(t.keyPrefix.length),
      ),
  }));
  const agent = stack.agent;
  if (withAgent && agent !== undefined) {
    probes.push({
      id: agent.target,
      paths: (prefix) => listFiles(join(agent.dir, prefix)).then((fs) => fs.map((f) => `${prefix}/${f}`)),
    });
  }
  return probes;
}

/**
 * Watches targets until each holds `expected` paths (or the deadline): records the time
 * each path was first seen at each target. Polls every `intervalMs`, so times are late by
 * up to that much.
 */
export async function watchTargets(
  probes: readonly TargetProbe[],
  prefix: string,
  expected: ReadonlySet<string>,
  options: {
    intervalMs: number;
    timeoutMs: number;
    /** Also wait until this is true (the expected set may still be growing). */
    stopWhen?: () => boolean;
    /** After each poll, with what was seen so far (live: it keeps changing). */
    onPoll?: (seen: ReadonlyMap<string, ReadonlyMap<string, number>>) => void;
  },
): Promise<Map<string, Map<string, number>>> {
  const seen = new Map(probes.map((p) => [p.id, new Map<string, number>()]));
  const deadline = performance.now() + options.timeoutMs;
  const complete = () => [...seen.values()].every((m) => m.size >= expected.size);
  while (!(complete() && (options.stopWhen?.() ?? true)) && performance.now() < deadline) {
    await Promise.all(
      probes.map(async (probe) => {
        const paths = await probe.paths(prefix);
        // Seen by the end of the listing: late by at most the poll interval plus one listing.
        const now = performance.now();
        const got = seen.get(probe.id) as Map<string, number>;
        for (const path of paths) if (expected.has(path) && !got.has(path)) got.set(path, now);
      }),
    );
    options.onPoll?.(seen);
    await sleep(options.intervalMs);
  }
  return seen;
}
