/**
 * What the chaos run checks (docs/chaos.md), through the API, the buckets, the mirror folders
 * and the dead-letter queues: every operation's version in the ledger, versions gap-free and
 * none twice, and every target holding exactly the ledger's head (bytes read back and hashed).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { FileVersionView } from '../contracts/api.ts';
import type { SandboxEndpoints } from '../local/sandbox.ts';
import type { BucketClients } from '../test/support/regional-s3.ts';
import type { MirrorApi } from '../web/client/api.ts';
import type { OpResult } from './chaos-workload.ts';

export interface PathState {
  readonly head: FileVersionView | undefined;
  readonly versions: readonly number[];
  /** Those of `versions` that are tombstones (deletes). */
  readonly tombstones: readonly number[];
  /** Applied version per target, from the ledger's target rows. */
  readonly applied: ReadonlyMap<string, number>;
}

const notFound = (error: unknown) =>
  (error as { status?: number }).status === 404 ||
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404 ||
  (error as { code?: string }).code === 'ENOENT';

export async function readPath(
  client: MirrorApi,
  path: string,
  options = { versions: true },
): Promise<PathState> {
  let file: Awaited<ReturnType<MirrorApi['getFile']>>;
  try {
    file = await client.getFile(path);
  } catch (error) {
    if (notFound(error)) return { head: undefined, versions: [], tombstones: [], applied: new Map() };
    throw error;
  }
  const versions: number[] = [];
  const tombstones: number[] = [];
  let before: number | undefined;
  if (options.versions)
    do {
      const page = await client.listVersions(path, {
        limit: 100,
        ...(before === undefined ? {} : { before }),
      });
      versions.push(...page.versions.map((v) => v.version));
      tombstones.push(...page.versions.filter((v) => v.deleted).map((v) => v.version));
      before = page.nextBefore;
    } while (before !== undefined);
  versions.sort((a, b) => a - b);
  return {
    head: file.head,
    versions,
    tombstones,
    applied: new Map(file.targets.map((t) => [t.id, t.appliedVersion])),
  };
}

/** Each upload's outcome as the API now tells it. */
export async function uploadOutcomes(
  client: MirrorApi,
  results: readonly OpResult[],
  skip: ReadonlySet<string> = new Set(),
) {
  const outcomes = new Map<string, { status: string; version?: number | undefined }>();
  for (const r of results) {
    if (r.uploadId === undefined || outcomes.has(r.uploadId) || skip.has(r.uploadId)) continue;
    const u = await client.getUpload(r.uploadId);
    outcomes.set(r.uploadId, { status: u.status, version: u.version });
  }
  return outcomes;
}

export interface LedgerFigures {
  readonly versionsCommitted: number;
  /** Version numbers missing below a path's highest. */
  readonly gaps: number;
  /** Versions no operation accounts for (an operation committed twice), plus operations sharing one version. */
  readonly duplicateVersions: number;
  /** For each path with one: its versions, and what its operations came to (at most 10 paths). */
  readonly duplicateDetail: readonly string[];
}

/**
 * A failed call that may have committed anyway: no answer (transport, 5xx), or "still in progress"
 * (its first try died after the commit, before its answer was stored). A 4xx refusal changed nothing.
 */
function mayHaveCommitted(error: string | undefined): boolean {
  if (error === undefined) return false;
  return /still in progress/.test(error) || !/answered 4\d\d/.test(error);
}

/** The versions each path's operations account for, and its deletes that may have committed unheard. */
function claimsOf(
  results: readonly OpResult[],
  outcomes: ReadonlyMap<string, { status: string; version?: number | undefined }>,
) {
  const claimed = new Map<string, number[]>();
  // Deletes whose API call died (a crash point after the commit; 409 "still in progress" or 5xx
  // for the client): each may have committed one tombstone the client never heard of.
  const diedDeletes = new Map<string, number>();
  for (const r of results) {
    // An upload's outcome is the ledger's word, whatever its client heard (its proof's call may have
    // died after committing it).
    const version = r.uploadId === undefined ? r.version : outcomes.get(r.uploadId)?.version;
    if (version !== undefined && (r.error === undefined || r.uploadId !== undefined)) {
      claimed.set(r.op.path, [...(claimed.get(r.op.path) ?? []), version]);
    } else if (r.op.kind === 'delete' && mayHaveCommitted(r.error)) {
      diedDeletes.set(r.op.path, (diedDeletes.get(r.op.path) ?? 0) + 1);
    }
  }
  return { claimed, diedDeletes };
}

export function ledgerFigures(
  states: ReadonlyMap<string, PathState>,
  results: readonly OpResult[],
  outcomes: ReadonlyMap<string, { status: string; version?: number | undefined }>,
): LedgerFigures {
  const { claimed, diedDeletes } = claimsOf(results, outcomes);
  let versionsCommitted = 0;
  let gaps = 0;
  let duplicateVersions = 0;
  const duplicateDetail: string[] = [];
  for (const [path, s] of states) {
    versionsCommitted += s.versions.length;
    const max = s.versions.at(-1) ?? 0;
    gaps += max - new Set(s.versions).size;
    const mine = claimed.get(path) ?? [];
    // An upload and its duplicate delivery each holding a version, or two uploads holding one.
    const unaccounted = s.versions.filter((v) => !mine.includes(v));
    const tombstones = unaccounted.filter((v) => s.tombstones.includes(v)).length;
    const found =
      unaccounted.length -
      Math.min(tombstones, diedDeletes.get(path) ?? 0) +
      mine.length -
      new Set(mine).size;
    duplicateVersions += found;
    if (found > 0 && duplicateDetail.length < 10) {
      const ops = results
        .filter((r) => r.op.path === path)
        .map(
          (r) =>
            `${r.op.kind} ${r.uploadId ?? ''} v${r.version ?? outcomes.get(r.uploadId ?? '')?.version} ${r.error ?? ''}`,
        );
      duplicateDetail.push(
        `${path}: versions ${s.versions.join(',')} (tombstones ${s.tombstones.join(',')}); ${ops.join('; ')}`,
      );
    }
  }
  return { versionsCommitted, gaps, duplicateVersions, duplicateDetail };
}

type Target = SandboxEndpoints['targets'][string] & { readonly id: string };

export function targetsOf(endpoints: SandboxEndpoints): Target[] {
  return Object.entries(endpoints.targets)
    .filter(([, t]) => t.dryRun !== true)
    .map(([id, t]) => ({ ...t, id }));
}

const selects = (t: Target, path: string) => t.pathPrefix === undefined || path.startsWith(t.pathPrefix);

/** What a target holds for a path: its version (S3 metadata; pull: undefined), SHA-256 and size; undefined when absent. */
interface Held {
  readonly version: number | undefined;
  readonly sha256: string | undefined;
  readonly size: number;
}

export interface TargetAccess {
  /** A client for a bucket, signing for its region. */
  readonly s3: BucketClients;
  readonly dataDir: string;
}

async function heldAt(
  access: TargetAccess,
  t: Target,
  path: string,
  hash: boolean,
): Promise<Held | undefined> {
  try {
    if (t.kind === 'pull') {
      const file = join(access.dataDir, 'onprem', t.id, path);
      const info = await stat(file);
      return {
        version: undefined,
        sha256: hash ? await hashStream(createReadStream(file)) : undefined,
        size: info.size,
      };
    }
    const key = `${t.keyPrefix ?? ''}${path}`;
    if (!hash) {
      const out = await access.s3(t.bucket).send(new HeadObjectCommand({ Bucket: t.bucket, Key: key }));
      return {
        version: Number(out.Metadata?.['mirror-version']),
        sha256: out.Metadata?.['mirror-sha256'],
        size: out.ContentLength ?? 0,
      };
    }
    const out = await access.s3(t.bucket).send(new GetObjectCommand({ Bucket: t.bucket, Key: key }));
    const sha256 = await hashStream(out.Body as AsyncIterable<Uint8Array>);
    return { version: Number(out.Metadata?.['mirror-version']), sha256, size: out.ContentLength ?? 0 };
  } catch (error) {
    if (notFound(error)) return undefined;
    throw error;
  }
}

async function hashStream(body: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of body) h.update(chunk);
  return h.digest('hex');
}

/** Whether one target holds exactly the path's head (deleted: nothing); `hash` reads the bytes back. */
async function targetEqual(access: TargetAccess, t: Target, path: string, s: PathState, hash: boolean) {
  const head = s.head;
  if (head === undefined) return true;
  if ((s.applied.get(t.id) ?? 0) !== head.version) return false;
  const held = await heldAt(access, t, path, hash);
  if (head.deleted) return held === undefined;
  if (held === undefined || held.size !== head.size) return false;
  if (held.version !== undefined && held.version !== head.version) return false;
  return held.sha256 === undefined || held.sha256 === head.sha256;
}

/** Paths (with the target) where a target differs from the ledger's head. */
export async function targetDifferences(
  access: TargetAccess,
  targets: readonly Target[],
  states: ReadonlyMap<string, PathState>,
  options: { hash: boolean },
): Promise<string[]> {
  const differ: string[] = [];
  for (const [path, s] of states) {
    for (const t of targets) {
      if (!selects(t, path)) continue;
      if (!(await targetEqual(access, t, path, s, options.hash))) differ.push(`${t.id}:${path}`);
    }
  }
  return differ;
}

export interface DlqFigures {
  readonly messages: number;
  /** Messages whose work the ledger and the targets show done (a retry, reconcile or re-notification did it). */
  readonly explained: number;
  readonly unexplained: readonly string[];
}

/**
 * Drains every dead-letter queue and explains each message: an ingest event is explained when
 * no upload of its blob is still pending; a target message when the target has applied that
 * version of the path or a newer one.
 */
export async function explainDlqs(
  sqs: SQSClient,
  endpoints: SandboxEndpoints,
  states: ReadonlyMap<string, PathState>,
  pendingBlobs: ReadonlySet<string>,
): Promise<DlqFigures> {
  const queues = [
    { url: endpoints.ingest.dlq, target: undefined as string | undefined },
    ...targetsOf(endpoints).map((t) => ({ url: t.dlq, target: t.id })),
  ];
  let messages = 0;
  let explained = 0;
  const unexplained: string[] = [];
  for (const q of queues) {
    for (const body of await drain(sqs, q.url)) {
      messages++;
      const why =
        q.target === undefined
          ? ingestUnexplained(body, pendingBlobs)
          : targetUnexplained(body, q.target, states);
      if (why === undefined) explained++;
      else unexplained.push(why);
    }
  }
  return { messages, explained, unexplained };
}

function ingestUnexplained(body: string, pendingBlobs: ReadonlySet<string>): string | undefined {
  const key = (JSON.parse(body) as { Records?: { s3?: { object?: { key?: string } } }[] }).Records?.[0]?.s3
    ?.object?.key;
  const sha256 = key?.replace(/^blobs\//, '');
  if (sha256 === undefined) return `ingest DLQ: a message that is no S3 event: ${body.slice(0, 120)}`;
  return pendingBlobs.has(sha256) ? `ingest DLQ: blob ${sha256} still has a pending upload` : undefined;
}

function targetUnexplained(
  body: string,
  target: string,
  states: ReadonlyMap<string, PathState>,
): string | undefined {
  const m = JSON.parse(body) as { path?: string; version?: number };
  const applied = m.path === undefined ? undefined : states.get(m.path)?.applied.get(target);
  if (m.version !== undefined && applied !== undefined && applied >= m.version) return undefined;
  return `${target} DLQ: ${m.path} v${m.version} not applied (target holds v${applied ?? 0})`;
}

async function drain(sqs: SQSClient, url: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 300,
      }),
    );
    const got = out.Messages ?? [];
    if (got.length === 0) return bodies;
    bodies.push(...got.map((m) => m.Body ?? ''));
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: url,
        Entries: got.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      }),
    );
  }
}
