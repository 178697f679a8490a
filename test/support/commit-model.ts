/**
 * A model-based property of the commit protocol (functions/core/commit.ts) on any Ledger, with
 * crashes. fast-check draws uploads to a few paths (some with `ifVersion`), plain commits, how
 * many workers deliver each upload at once, and which ledger calls crash (any write, before or
 * after it applies, and any read); its scheduler interleaves every ledger call of every worker
 * and of a feed reader. A crashed delivery is delivered again (as SQS redelivers), and handles the outcome as the ingest
 * does. After each run the ledger must agree with the model:
 *
 * - each path's versions are 1..n without a gap, and its head is version n;
 * - each upload ended (committed or rejected): a committed one has exactly one version, the one
 *   the upload names; a rejected one has none, and had an `ifVersion`;
 * - an upload committed with `ifVersion` k is version k + 1 (a conflict never overwrites);
 * - a plain commit made at most one version; every version is one of the model's requests;
 * - each shard's feed is seq 1..m with no hole, each version in it exactly once, as committed;
 * - no pending pointer is left; a reader following the feed meanwhile only ever saw a prefix.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Change, FileVersion, Upload } from '../../contracts/model.js';
import { commitVersion } from '../../functions/core/commit.js';
import { UploadFinishedError, VersionConflictError } from '../../functions/core/errors.js';
import type { Ledger } from '../../functions/core/ports.js';
import { FeedShards } from '../../functions/core/shards.js';

const PATHS = ['media/a.png', 'media/b.png', 'docs/c.txt'] as const;
const T0 = '2026-11-30T00:00:00.000Z';

export class Crash extends Error {
  constructor(method: string, when: 'before' | 'after') {
    super(`crash ${when} ${method}`);
  }
}

type CrashPoint = { readonly at: number; readonly when: 'before' | 'after' };

interface Request {
  readonly kind: 'upload' | 'plain';
  readonly path: number;
  /** Uploads only: the version the uploader saw. */
  readonly ifVersion: number | undefined;
  /** Uploads only: workers delivering it at once. */
  readonly deliveries: number;
}

interface Scenario {
  readonly shards: number;
  /**
   * `process`: every worker in one process, lent shards by one FeedShards (they never race each
   * other for a counter); `worker`: each worker a process of its own, with its own.
   */
  readonly lenders: 'process' | 'worker';
  readonly requests: readonly Request[];
  readonly crashes: readonly CrashPoint[];
}

const scenarioArbitrary: fc.Arbitrary<Scenario> = fc.record({
  shards: fc.integer({ min: 1, max: 2 }),
  lenders: fc.constantFrom<'process' | 'worker'>('process', 'worker'),
  requests: fc.array(
    fc.record({
      kind: fc.constantFrom<'upload' | 'plain'>('upload', 'upload', 'plain'),
      path: fc.integer({ min: 0, max: PATHS.length - 1 }),
      ifVersion: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined, freq: 2 }),
      deliveries: fc.integer({ min: 1, max: 3 }),
    }),
    { minLength: 1, maxLength: 7 },
  ),
  crashes: fc.uniqueArray(
    fc.record({ at: fc.nat({ max: 60 }), when: fc.constantFrom<'before' | 'after'>('before', 'after') }),
    { selector: (c) => c.at, maxLength: 6 },
  ),
});

export interface ModelStats {
  runs: number;
  crashesInjected: number;
  versionsCommitted: number;
  uploadsRejected: number;
}

/**
 * The ledger as the workers see it: each call waits for the scheduler's turn, and the planned
 * calls throw before their effect or after it (a write applied, its answer lost). Reads crash
 * too: a worker dies wherever it is.
 */
function chaoticLedger(
  ledger: Ledger,
  scheduler: fc.Scheduler,
  crashes: readonly CrashPoint[],
  stats: ModelStats,
): Ledger {
  const plan = new Map(crashes.map((c) => [c.at, c.when]));
  let calls = 0;
  return new Proxy(ledger, {
    get(target, property) {
      const member = Reflect.get(target, property, target) as unknown;
      if (typeof member !== 'function') return member;
      const method = String(property);
      return async (...args: unknown[]) => {
        await scheduler.schedule(Promise.resolve(), method);
        const call = () => (member as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        const when = plan.get(calls++);
        if (when === 'before') {
          stats.crashesInjected++;
          throw new Crash(method, when);
        }
        const result = await call();
        if (when === 'after') {
          stats.crashesInjected++;
          throw new Crash(method, when);
        }
        return result;
      };
    },
  });
}

const sha = (n: number) => n.toString(16).padStart(64, '0');

function uploadOf(request: Request, index: number): Upload {
  return {
    uploadId: `upload-${index}`,
    path: PATHS[request.path] as string,
    sha256: sha(index + 1),
    size: index + 1,
    contentType: 'image/png',
    ...(request.ifVersion === undefined ? {} : { ifVersion: request.ifVersion }),
    status: 'pending',
    createdAt: T0,
    updatedAt: T0,
  };
}

type Deps = Parameters<typeof commitVersion>[0];

/** One worker's delivery of an upload, redelivered after a crash, its outcome handled as the ingest does. */
async function deliver(deps: Deps & { ledger: Ledger }, upload: Upload): Promise<void> {
  for (let delivery = 1; delivery <= 50; delivery++) {
    try {
      await settle(deps, upload);
      return;
    } catch (error) {
      if (!(error instanceof Crash)) throw error;
    }
  }
  throw new Error(`upload ${upload.uploadId}: still crashing after 50 deliveries`);
}

async function settle(deps: Deps & { ledger: Ledger }, upload: Upload): Promise<void> {
  const { ledger } = deps;
  const current = await ledger.getUpload(upload.uploadId);
  if (current?.status !== 'pending') return ledger.removePendingUpload(upload.sha256, upload.uploadId);
  try {
    await commitVersion(deps, {
      uploadId: upload.uploadId,
      path: upload.path,
      sha256: upload.sha256,
      size: upload.size,
      contentType: upload.contentType,
      deleted: false,
      ifVersion: upload.ifVersion,
      endsUpload: { deduplicated: false },
    });
  } catch (error) {
    if (error instanceof UploadFinishedError)
      return ledger.removePendingUpload(upload.sha256, upload.uploadId);
    if (!(error instanceof VersionConflictError)) throw error;
    await ledger.finishUpload(upload.uploadId, { status: 'rejected', reason: error.message }, T0);
    await ledger.removePendingUpload(upload.sha256, upload.uploadId);
  }
}

/** A plain commit (a delete request, say): a crash fails the request, its client sees an error. */
async function plainCommit(deps: Deps, request: Request, index: number): Promise<void> {
  await commitVersion(deps, {
    uploadId: `plain-${index}`,
    path: PATHS[request.path] as string,
    sha256: null,
    size: 0,
    contentType: null,
    deleted: true,
  }).catch((error: unknown) => {
    if (!(error instanceof Crash)) throw error;
  });
}

/** Follows every shard's feed while the workers run: each page must continue the cursor without a hole. */
async function followFeed(ledger: Ledger, shards: number, done: () => boolean): Promise<void> {
  const cursor = Array.from({ length: shards }, () => 0);
  for (let round = 0; round < 200; round++) {
    const finished = done();
    for (let shard = 0; shard < shards; shard++) {
      const page = await ledger.readFeed(shard, cursor[shard] as number, 5);
      const from = cursor[shard] as number;
      expect(page.map((c) => c.seq)).toEqual(page.map((_, i) => from + i + 1));
      cursor[shard] = from + page.length;
    }
    if (finished) return;
  }
}

async function runScenario(ledger: Ledger, scheduler: fc.Scheduler, scenario: Scenario, stats: ModelStats) {
  const uploads = scenario.requests.map((r, i) => (r.kind === 'upload' ? uploadOf(r, i) : undefined));
  for (const upload of uploads) {
    if (upload === undefined) continue;
    await ledger.putUpload(upload);
    await ledger.addPendingUpload(upload.sha256, upload.uploadId);
  }
  const chaotic = chaoticLedger(ledger, scheduler, scenario.crashes, stats);
  const shared = new FeedShards(scenario.shards);
  const depsOfWorker = () => ({
    ledger: chaotic,
    fanout: { send: async () => undefined },
    clock: { now: () => new Date() },
    feedShards: scenario.shards,
    targets: [],
    shardLender: scenario.lenders === 'process' ? shared : new FeedShards(scenario.shards),
  });
  const workers = scenario.requests.flatMap((request, i) => {
    const upload = uploads[i];
    if (upload === undefined) return [plainCommit(depsOfWorker(), request, i)];
    return Array.from({ length: request.deliveries }, () => deliver(depsOfWorker(), upload));
  });
  let finished = false;
  const all = Promise.all(workers).finally(() => {
    finished = true;
  });
  // The reader reads the ledger itself (no crashes), in turns the scheduler picks too.
  const reader = followFeed(chaoticReader(ledger, scheduler), scenario.shards, () => finished);
  await scheduler.waitFor(Promise.all([all, reader]));
  return uploads;
}

/** The ledger's reads, each waiting for the scheduler's turn (a reader that never crashes). */
const chaoticReader = (ledger: Ledger, scheduler: fc.Scheduler): Ledger =>
  chaoticLedger(ledger, scheduler, [], {
    runs: 0,
    crashesInjected: 0,
    versionsCommitted: 0,
    uploadsRejected: 0,
  });

async function versionsByPath(ledger: Ledger): Promise<Map<string, FileVersion[]>> {
  const byPath = new Map<string, FileVersion[]>();
  for (const path of PATHS) {
    byPath.set(path, (await ledger.listVersions(path, { limit: 1000 })).reverse());
  }
  return byPath;
}

const contentOf = (v: FileVersion | Change) => ({
  path: v.path,
  version: v.version,
  sha256: v.sha256,
  size: v.size,
  contentType: v.contentType,
  deleted: v.deleted,
  committedAt: v.committedAt,
});

async function checkPaths(ledger: Ledger, byPath: Map<string, FileVersion[]>): Promise<void> {
  for (const [path, versions] of byPath) {
    expect(
      versions.map((v) => v.version),
      path,
    ).toEqual(versions.map((_, i) => i + 1));
    const head = await ledger.getHead(path);
    expect(head === undefined ? undefined : contentOf(head), `head of ${path}`).toEqual(
      versions.length === 0 ? undefined : contentOf(versions.at(-1) as FileVersion),
    );
  }
}

async function checkUploads(
  ledger: Ledger,
  uploads: readonly (Upload | undefined)[],
  all: readonly FileVersion[],
  stats: ModelStats,
): Promise<void> {
  for (const upload of uploads) {
    if (upload === undefined) continue;
    const ended = await ledger.getUpload(upload.uploadId);
    const own = all.filter((v) => v.uploadId === upload.uploadId);
    expect(await ledger.listPendingUploads(upload.sha256), upload.uploadId).toEqual([]);
    if (ended?.status === 'rejected') {
      stats.uploadsRejected++;
      expect(own, `${upload.uploadId} rejected`).toEqual([]);
      expect(upload.ifVersion, `${upload.uploadId}: only a conflict rejects`).toBeDefined();
      continue;
    }
    expect(ended?.status, upload.uploadId).toBe('committed');
    expect(
      own.map((v) => v.version),
      `${upload.uploadId}: one version`,
    ).toEqual([ended?.version]);
    expect(own[0]).toMatchObject({ path: upload.path, sha256: upload.sha256, size: upload.size });
    if (upload.ifVersion !== undefined) expect(ended?.version, 'no lost update').toBe(upload.ifVersion + 1);
  }
}

async function checkFeed(ledger: Ledger, shards: number, all: readonly FileVersion[]): Promise<void> {
  const entries: Change[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const feed = await ledger.readFeed(shard, 0, 10_000);
    expect(
      feed.map((c) => c.seq),
      `shard ${shard}`,
    ).toEqual(feed.map((_, i) => i + 1));
    expect(await ledger.latestFeedSeq(shard)).toBe(feed.length);
    // Any shard may hold any path's versions (FeedShards lends them): each entry says which it is in.
    for (const change of feed) expect(change.shard).toBe(shard);
    entries.push(...feed);
  }
  const key = (v: FileVersion | Change) => `${v.path}@${v.version}`;
  expect(entries.map(key).sort()).toEqual(all.map(key).sort());
  const byKey = new Map(all.map((v) => [key(v), v]));
  for (const change of entries)
    expect(contentOf(change)).toEqual(contentOf(byKey.get(key(change)) as FileVersion));
}

async function checkInvariants(
  ledger: Ledger,
  scenario: Scenario,
  uploads: readonly (Upload | undefined)[],
  stats: ModelStats,
): Promise<void> {
  const byPath = await versionsByPath(ledger);
  await checkPaths(ledger, byPath);
  const all = [...byPath.values()].flat();
  stats.versionsCommitted += all.length;
  await checkUploads(ledger, uploads, all, stats);
  // Each version is one request's: an upload's, or a plain commit's (at most once, crash or not).
  const known = new Set(
    scenario.requests.map((r, i) => (r.kind === 'upload' ? `upload-${i}` : `plain-${i}`)),
  );
  for (const v of all) expect(known.has(v.uploadId), v.uploadId).toBe(true);
  const plain = all.filter((v) => v.uploadId.startsWith('plain-')).map((v) => v.uploadId);
  expect(new Set(plain).size).toBe(plain.length);
  await checkFeed(ledger, scenario.shards, all);
}

/** Runs the property `numRuns` times on fresh ledgers from `makeLedger`; returns what it injected. */
export async function checkCommitProtocol(options: {
  readonly makeLedger: () => Promise<Ledger>;
  readonly numRuns: number;
  readonly seed?: number;
}): Promise<ModelStats> {
  const stats: ModelStats = { runs: 0, crashesInjected: 0, versionsCommitted: 0, uploadsRejected: 0 };
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), scenarioArbitrary, async (scheduler, scenario) => {
      stats.runs++;
      const ledger = await options.makeLedger();
      const uploads = await runScenario(ledger, scheduler, scenario, stats);
      await checkInvariants(ledger, scenario, uploads, stats);
    }),
    { numRuns: options.numRuns, ...(options.seed === undefined ? {} : { seed: options.seed }) },
  );
  return stats;
}
