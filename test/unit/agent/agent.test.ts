/**
 * The agent's loops with in-memory ports (no network): conditions are logged once
 * and retried, a stop abandons in-flight work safely, the heartbeat reports the cursor.
 */
import { createHash } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../../../agent/agent.ts';
import { AgentConfigError } from '../../../agent/errors.ts';
import { createMemoryLog, createTtyLog, formatStatusLine } from '../../../agent/log.ts';
import type { BlobSource, LedgerView, QueueMessage, QueuePort } from '../../../agent/ports.ts';
import { ServerClock } from '../../../agent/server-clock.ts';
import { StateStore } from '../../../agent/state-store.ts';
import type { AgentRow } from '../../../contracts/ledger-keys.ts';
import type { Change, FileVersion } from '../../../contracts/model.ts';
import { parseCursor } from '../../../contracts/model.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let base: string;
let n = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-agent-unit-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

class FakeLedger implements LedgerView {
  readonly feed: Change[] = [];
  readonly versions = new Map<string, FileVersion>();
  readonly applied: string[] = [];
  readonly rows: AgentRow[] = [];

  commit(path: string, version: number, bytes: Buffer): void {
    const v: FileVersion = {
      path,
      version,
      sha256: sha(bytes),
      size: bytes.length,
      contentType: null,
      deleted: false,
      committedAt: new Date().toISOString(),
      uploadId: `u${version}`,
    };
    this.versions.set(`${path}#${version}`, v);
    this.feed.push({ ...v, shard: 0, seq: this.feed.length + 1, appendedAt: v.committedAt });
  }
  async getVersion(path: string, version: number) {
    return this.versions.get(`${path}#${version}`);
  }
  async readFeed(shard: number, after: number, limit: number) {
    return this.feed.filter((c) => c.shard === shard && c.seq > after).slice(0, limit);
  }
  async latestFeedSeq() {
    return this.feed.length;
  }
  async recordApplied(path: string, version: number) {
    this.applied.push(`${path}@${version}`);
  }
  readonly refusals: string[] = [];
  async recordRefusal(path: string, version: number, reason: string) {
    this.refusals.push(`${path}@${version}: ${reason}`);
  }
  async writeAgentRow(row: AgentRow) {
    this.rows.push(row);
  }
  async readAgentRow() {
    return this.rows.at(-1);
  }
}

const emptyQueue: QueuePort = {
  receive: async ({ signal }) => {
    // The signal outlives every receive: each one unhooks itself, as the real queue's does.
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, 20);
      signal.addEventListener('abort', done, { once: true });
    });
    return [] as QueueMessage[];
  },
  delete: async () => undefined,
  setVisibility: async () => undefined,
  backlog: async () => 0,
};

function options(ledger: FakeLedger, blobs: BlobSource, extra: Record<string, unknown> = {}) {
  const dir = join(base, `mirror-${++n}`);
  const log = createMemoryLog();
  return {
    dir,
    log,
    options: {
      targetId: 'onprem-dc1',
      dir,
      table: 'ledger',
      originBucket: 'origin',
      queueUrl: 'https://sqs.invalid/q.fifo',
      feedShards: 1,
      heartbeatSeconds: 1,
      retryBaseMs: 20,
      shutdownGraceSeconds: 0,
      log,
      ports: { ledger, blobs, queue: emptyQueue },
      ...extra,
    },
  };
}

async function until(probe: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A ledger whose commits' bytes the blob source serves: `commit(path, version, text)`. */
function ledgerWithBlobs() {
  const ledger = new FakeLedger();
  const contents = new Map<string, Buffer>();
  const commit = (path: string, version: number, text: string) => {
    const bytes = Buffer.from(text);
    contents.set(sha(bytes), bytes);
    ledger.commit(path, version, bytes);
  };
  const blobs: BlobSource = {
    open: async (sha256) => {
      const data = contents.get(sha256) as Buffer;
      return {
        body: [data][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
        contentLength: data.length,
        close() {},
      };
    },
  };
  return { ledger, commit, blobs };
}

describe('agent loops (in-memory ports)', () => {
  it('disk full, then permission denied: one log line each, retried with backoff, then applied', async () => {
    const ledger = new FakeLedger();
    const bytes = Buffer.from('hello, on-prem');
    ledger.commit('docs/hello.txt', 1, bytes);
    const failures = ['ENOSPC', 'ENOSPC', 'ENOSPC', 'EACCES', 'EACCES'];
    const blobs: BlobSource = {
      open: async () => {
        const code = failures.shift();
        if (code) throw Object.assign(new Error(`${code}: simulated`), { code });
        return {
          body: [bytes][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
          contentLength: bytes.length,
          close() {},
        };
      },
    };
    const { dir, log, options: o } = options(ledger, blobs);
    const agent = await startAgent(o);
    await until(
      async () => (await readFile(join(dir, 'docs/hello.txt'), 'utf8').catch(() => '')) === 'hello, on-prem',
    );
    await agent.stop();
    const conditionLines = log.entries.filter((e) => e.fields.condition !== undefined).map((e) => e.msg);
    expect(conditionLines.filter((m) => m.startsWith('disk full'))).toHaveLength(1);
    expect(conditionLines.filter((m) => m.startsWith('permission denied'))).toHaveLength(1);
    expect(conditionLines).toContain('recovered: disk-full');
    expect(conditionLines).toContain('recovered: permission-denied');
    expect(ledger.applied).toEqual(['docs/hello.txt@1']);
    expect(agent.stats()).toMatchObject({ status: 'stopped', applied: 1, failed: 0, cursor: [1] });
  });

  it('a condition is recovered only when the write that met it succeeds, not when another write does', async () => {
    const ledger = new FakeLedger();
    const big = Buffer.from('a file the full disk refuses');
    const small = Buffer.from('small');
    ledger.commit('big.bin', 1, big);
    ledger.commit('small.txt', 1, small);
    let diskFull = true;
    const blobs: BlobSource = {
      open: async (sha256) => {
        const data = sha256 === sha(big) ? big : small;
        if (data === big && diskFull) throw Object.assign(new Error('ENOSPC: simulated'), { code: 'ENOSPC' });
        return {
          body: [data][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
          contentLength: data.length,
          close() {},
        };
      },
    };
    const { dir, log, options: o } = options(ledger, blobs);
    const agent = await startAgent(o);
    await until(() => ledger.applied.includes('small.txt@1'));
    // A few more retries of the big file (20 ms backoff) after the small one is done.
    await new Promise((r) => setTimeout(r, 150));
    const conditionLines = () =>
      log.entries.filter((e) => e.fields.condition === 'disk-full').map((e) => e.msg);
    expect(conditionLines().filter((m) => m.startsWith('recovered'))).toEqual([]);
    expect(agent.stats().conditions).toEqual(['disk-full']);
    diskFull = false;
    await until(
      async () => (await readFile(join(dir, 'big.bin'), 'utf8').catch(() => '')) === big.toString(),
    );
    await agent.stop();
    expect(conditionLines().filter((m) => m.startsWith('disk full'))).toHaveLength(1);
    expect(conditionLines().filter((m) => m.startsWith('recovered'))).toEqual(['recovered: disk-full']);
  });

  it('a network outage met by many paths at once raises no MaxListenersExceededWarning, and leaves no listener behind', async () => {
    // Each path retrying waits on the agent's stop signal, and a catch-up round works a whole feed
    // page at once: 40 paths waiting made Node warn of a "possible memory leak" on every outage.
    const ledger = new FakeLedger();
    const bytes = Buffer.from('many paths');
    for (let i = 0; i < 40; i++) ledger.commit(`outage/${i}.txt`, 1, bytes);
    let down = true;
    let opens = 0;
    const blobs: BlobSource = {
      open: async () => {
        opens++;
        if (down) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
        return {
          body: [bytes][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
          contentLength: bytes.length,
          close() {},
        };
      },
    };
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const { options: o } = options(ledger, blobs);
      const agent = await startAgent(o);
      // Every path has failed a few times: most of them are waiting out their backoff together.
      await until(() => opens >= 40 * 4, 30_000);
      down = false;
      await until(() => ledger.applied.length === 40, 60_000);
      // Each wait unhooks itself: what is left is the loops' own waits (catch-up, folder check).
      const stopSignal = (agent as unknown as { shutdown: AbortController }).shutdown.signal;
      expect(getEventListeners(stopSignal, 'abort').length).toBeLessThanOrEqual(3);
      await agent.stop();
      // A warning is emitted on a later tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  }, 120_000);

  it("a journal entry that names a mirrored file, not one of the agent's temp names, deletes nothing at start", async () => {
    const ledger = new FakeLedger();
    const bytes = Buffer.from('a mirrored file');
    ledger.commit('docs/keep.txt', 1, bytes);
    const blobs: BlobSource = {
      open: async () => ({
        body: [bytes][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
        contentLength: bytes.length,
        close() {},
      }),
    };
    const { dir, log, options: o } = options(ledger, blobs);
    const first = await startAgent(o);
    await until(() => ledger.applied.includes('docs/keep.txt@1'));
    await first.stop();
    // A tampered (or corrupt) journal: "docs/keep.txt is a temp file left by a crash"; beside it a real one.
    const state = await StateStore.open(join(dir, '.media-mirror'), {
      targetId: 'onprem-dc1',
      table: 'ledger',
      feedShards: 1,
    });
    await state.recordTemp('docs/keep.txt');
    await state.recordTemp('docs/.left.txt.mirror-tmp-1a2b');
    await state.close();
    await writeFile(join(dir, 'docs/.left.txt.mirror-tmp-1a2b'), 'partial');
    const second = await startAgent(o);
    await until(() =>
      log.entries.some((e) => e.msg === 'removed a temp file left by an interrupted download'),
    );
    await second.stop();
    expect(await readFile(join(dir, 'docs/keep.txt'), 'utf8')).toBe('a mirrored file');
    expect(await readdir(join(dir, 'docs'))).toEqual(['keep.txt']);
    expect(
      log.entries.find((e) => e.msg === 'ignored a journal entry that names no temp file')?.fields,
    ).toMatchObject({
      file: 'docs/keep.txt',
    });
  });

  it("warns of another live agent of the target on this host (another --dir), not of its own previous run's fresh row", async () => {
    const row = (pid: number): AgentRow => ({
      targetId: 'onprem-dc1',
      heartbeatAt: new Date().toISOString(),
      cursor: '',
      cursorSeqs: [0],
      appliedCount: 0,
      refusedCount: 0,
      agentVersion: '0.0.0',
      status: 'running',
      host: hostname(),
      pid,
      instanceId: 'other',
      startedAt: new Date().toISOString(),
    });
    const warning = 'another agent reported for this target moments ago: two agents would split its queue';
    const blobs: BlobSource = { open: async () => Promise.reject(new Error('no blob expected')) };
    const warned = async (pid: number) => {
      const ledger = new FakeLedger();
      ledger.rows.push(row(pid));
      const { log, options: o } = options(ledger, blobs);
      const agent = await startAgent(o);
      await new Promise((r) => setTimeout(r, 50));
      await agent.stop();
      return log.entries.find((e) => e.msg === warning)?.fields;
    };
    // The test runner's parent process stands for another agent alive on this host.
    expect(await warned(process.ppid)).toMatchObject({ otherHost: hostname(), otherPid: process.ppid });
    // A pid no process holds: this agent's previous run, gone without writing "stopped".
    expect(await warned(2 ** 22 + 12_345)).toBeUndefined();
  });

  it('refuses to start (78) on fewer feed shards than the ledger has, before its state records that count', async () => {
    const { ledger, blobs, commit } = ledgerWithBlobs();
    commit('a.txt', 1, 'a');
    ledger.feed.push({ ...(ledger.feed[0] as Change), path: 'b.txt', shard: 1, seq: 1 });
    const { dir, options: o } = options(ledger, blobs, { feedShardsFrom: '--feed-shards' });
    const error = await startAgent(o).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as AgentConfigError).exitCode).toBe(78);
    expect((error as Error).message).toMatch(/--feed-shards gives 1 feed shard.*entries under FEED#1/s);
    expect(await StateStore.peekIdentity(join(dir, '.media-mirror'))).toBeUndefined();
  });

  it('a deliberate change of the shard count the ledger agrees with: reads the whole feed again, naming both counts', async () => {
    const { ledger, blobs, commit } = ledgerWithBlobs();
    commit('a.txt', 1, 'a');
    const { dir, log, options: o } = options(ledger, blobs);
    const state = await StateStore.open(join(dir, '.media-mirror'), {
      targetId: 'onprem-dc1',
      table: 'ledger',
      feedShards: 4,
    });
    await state.close();
    const agent = await startAgent(o);
    await until(async () => (await readFile(join(dir, 'a.txt'), 'utf8').catch(() => '')) === 'a');
    await agent.stop();
    expect(log.entries.find((e) => e.msg.startsWith('the feed shard count changed'))?.fields).toMatchObject({
      feedShards: 1,
      was: 4,
    });
  });

  it('a path prefix widened between runs: the files it now selects come from the feed, not only from a resend (operator day 2)', async () => {
    const { ledger, blobs, commit } = ledgerWithBlobs();
    commit('public/a.txt', 1, 'public a');
    commit('private/b.txt', 1, 'private b');
    const first = options(ledger, blobs, { pathPrefix: 'public/' });
    const agent = await startAgent(first.options);
    await until(() => agent.stats().cursor.every((seq) => seq === 2));
    await agent.stop();
    expect(await readdir(first.dir)).not.toContain('private');

    // The operator takes the prefix off: the cursor is past private/b.txt, which no message brings.
    const log = createMemoryLog();
    const again = await startAgent({ ...first.options, pathPrefix: undefined, log });
    try {
      await until(
        async () =>
          (await readFile(join(first.dir, 'private/b.txt'), 'utf8').catch(() => '')) === 'private b',
      );
    } finally {
      await again.stop();
    }
    expect(log.entries.find((e) => e.msg.startsWith('the path prefix changed'))?.fields).toMatchObject({
      pathPrefix: null,
      was: 'public/',
    });
    // Narrowed again: what it passed stays passed (no second reading of the feed).
    const narrowLog = createMemoryLog();
    const narrowed = await startAgent({ ...first.options, pathPrefix: 'private/', log: narrowLog });
    await narrowed.stop();
    expect(narrowLog.entries.some((e) => e.msg.startsWith('the path prefix changed'))).toBe(false);
    expect(narrowLog.entries.find((e) => e.msg === 'agent starting')?.fields).toMatchObject({ cursor: [2] });
  });

  it('a heartbeat still in flight when the agent stops does not write "running" over the last row', async () => {
    const { ledger, blobs } = ledgerWithBlobs();
    let backlogAsked = 0;
    let releaseBacklog: (() => void) | undefined;
    const slowQueue: QueuePort = {
      ...emptyQueue,
      backlog: async () => {
        backlogAsked++;
        await new Promise<void>((resolve) => {
          releaseBacklog = resolve;
        });
        return 0;
      },
    };
    const { options: o } = options(ledger, blobs, { ports: { ledger, blobs, queue: slowQueue } });
    const agent = await startAgent(o);
    await until(() => backlogAsked > 0);
    // The stop comes while the heartbeat waits on the queue's figures, which arrive a moment later.
    const stopped = agent.stop();
    await new Promise((r) => setTimeout(r, 50));
    releaseBacklog?.();
    await stopped;
    await new Promise((r) => setTimeout(r, 100));
    expect(ledger.rows.map((row) => row.status).slice(-2)).toEqual(['running', 'stopped']);
  });

  it('the heartbeat reports cursor, counts and version; the last row says stopped', async () => {
    const ledger = new FakeLedger();
    for (let i = 1; i <= 3; i++) ledger.commit(`f${i}.txt`, 1, Buffer.from(`file ${i}`));
    const blobs: BlobSource = {
      open: async (sha256) => {
        const v = [...ledger.versions.values()].find((x) => x.sha256 === sha256) as FileVersion;
        const data = Buffer.from(`file ${v.path.slice(1, 2)}`);
        return {
          body: [data][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
          contentLength: data.length,
          close() {},
        };
      },
    };
    const { options: o } = options(ledger, blobs);
    const agent = await startAgent(o);
    await until(() => agent.stats().applied === 3);
    await until(() => ledger.rows.some((r) => r.appliedCount === 3));
    await agent.stop();
    const last = ledger.rows.at(-1) as AgentRow;
    expect(last).toMatchObject({
      targetId: 'onprem-dc1',
      status: 'stopped',
      appliedCount: 3,
      cursorSeqs: [3],
    });
    expect(parseCursor(last.cursor, 1)).toEqual([3]);
    expect(typeof last.agentVersion).toBe('string');
    expect(Date.parse(last.heartbeatAt)).toBeGreaterThan(0);
  });

  it('an agent that starts over reports that it rebuilds, from the oldest change it may lack, across a restart, until it has read the whole feed', async () => {
    const { ledger, commit, blobs } = ledgerWithBlobs();
    for (const [i, path] of ['a.txt', 'b.txt', 'c.txt'].entries()) {
      commit(path, 1, `file ${path}`);
      // Committed a day ago, a minute apart: the rows of an earlier run say all three are held.
      const entry = ledger.feed.at(-1) as Change;
      ledger.feed[ledger.feed.length - 1] = {
        ...entry,
        committedAt: new Date(Date.UTC(2026, 10, 1, 0, i)).toISOString(),
      };
    }
    const sinceB = ledger.feed[1]?.committedAt;
    let storageDown = true;
    const flaky: BlobSource = {
      open: async (sha256, signal) => {
        const v = [...ledger.versions.values()].find((x) => x.sha256 === sha256);
        if (v?.path === 'b.txt' && storageDown)
          throw Object.assign(new Error('connect ECONNRESET'), { code: 'ECONNRESET' });
        return blobs.open(sha256, signal);
      },
    };
    // A page per entry: a.txt is settled (the cursor passes it) while b.txt waits for storage.
    const { dir, options: o } = options(ledger, flaky, { feedPageSize: 1 });
    const first = await startAgent(o);
    await until(() => ledger.rows.some((r) => r.rebuildingSince === sinceB), 15_000);
    expect(ledger.rows.filter((r) => r.status === 'running').every((r) => r.rebuilding === true)).toBe(true);
    await first.stop();

    // Started again over the same folder: still rebuilding (its state says so), and from b.txt.
    const rowsBefore = ledger.rows.length;
    const second = await startAgent({ ...o, dir });
    await until(() => ledger.rows.slice(rowsBefore).some((r) => r.status === 'running'), 15_000);
    expect(ledger.rows.slice(rowsBefore).find((r) => r.status === 'running')).toMatchObject({
      rebuilding: true,
    });
    await until(() => ledger.rows.slice(rowsBefore).some((r) => r.rebuildingSince === sinceB), 15_000);
    storageDown = false;
    await until(() => {
      const last = ledger.rows.at(-1);
      return last?.status === 'running' && last.rebuilding === undefined && last.appliedCount >= 3;
    }, 15_000);
    await second.stop();

    // Done for good: a later start over the same state does not rebuild.
    const rowsDone = ledger.rows.length;
    const third = await startAgent({ ...o, dir });
    await until(() => ledger.rows.slice(rowsDone).some((r) => r.status === 'running'), 15_000);
    await third.stop();
    expect(ledger.rows.slice(rowsDone).every((r) => r.rebuilding === undefined)).toBe(true);
  });

  it('the folder check writes back a file removed or truncated by hand, and leaves files it does not hold alone', async () => {
    const { ledger, commit, blobs } = ledgerWithBlobs();
    commit('c/removed.txt', 1, 'removed by hand');
    commit('c/truncated.txt', 1, 'truncated by hand');
    commit('c/same.txt', 1, 'left alone');
    const { dir, log, options: o } = options(ledger, blobs, { folderCheckIntervalSeconds: 0.2 });
    const agent = await startAgent(o);
    await until(() => agent.stats().applied === 3);
    await rm(join(dir, 'c/removed.txt'));
    await writeFile(join(dir, 'c/truncated.txt'), 'trunc');
    // A file someone puts at a path the state knows nothing of is not touched either.
    await writeFile(join(dir, 'c/someone-elses.txt'), 'mine');
    const reportsBefore = ledger.applied.length;
    await until(() => agent.stats().restored === 2);
    await until(
      async () => (await readFile(join(dir, 'c/removed.txt'), 'utf8').catch(() => '')) === 'removed by hand',
    );
    expect(await readFile(join(dir, 'c/truncated.txt'), 'utf8')).toBe('truncated by hand');
    expect(await readFile(join(dir, 'c/someone-elses.txt'), 'utf8')).toBe('mine');
    expect(ledger.applied.slice(reportsBefore).sort()).toEqual(['c/removed.txt@1', 'c/truncated.txt@1']);
    const again = await agent.checkFolder();
    expect(again).toMatchObject({ checked: 3, lost: 0 });
    await agent.stop();
    expect(log.entries.filter((e) => e.msg.startsWith('a file is missing from the folder')).length).toBe(2);
  });

  it('a ledger restored from a backup: new entries that reuse seqs the cursor passed are read again and applied', async () => {
    const { ledger, commit, blobs } = ledgerWithBlobs();
    commit('keep.txt', 1, 'kept');
    commit('r/a.txt', 1, 'a before');
    commit('r/b.txt', 1, 'b before');
    const { dir, log, options: o } = options(ledger, blobs);
    const first = await startAgent(o);
    await until(() => first.stats().applied === 3);
    await first.stop();
    // The ledger goes back to a backup taken after the first entry; two commits follow, at seqs 2 and 3.
    ledger.feed.length = 1;
    ledger.versions.delete('r/a.txt#1');
    ledger.versions.delete('r/b.txt#1');
    commit('r/a.txt', 1, 'a after the restore');
    commit('r/new.txt', 1, 'new after the restore');
    const second = await startAgent(o);
    await until(
      async () =>
        (await readFile(join(dir, 'r/new.txt'), 'utf8').catch(() => '')) === 'new after the restore',
    );
    await until(async () => (await readFile(join(dir, 'r/a.txt'), 'utf8')) === 'a after the restore');
    await second.stop();
    expect(await readFile(join(dir, 'keep.txt'), 'utf8')).toBe('kept');
    expect(
      log.entries.some(
        (e) => e.level === 'warn' && e.msg.includes('no longer holds the entry the cursor stood on'),
      ),
    ).toBe(true);
    // Once read again, the cursor stands on the new entries: a third start reads nothing twice.
    const applied = ledger.applied.length;
    const third = await startAgent(o);
    await until(() => third.stats().catchUpRounds >= 1);
    await third.stop();
    expect(ledger.applied.length).toBe(applied);
    expect(third.stats().cursor).toEqual([3]);
  });

  it("the heartbeat carries the servers' time, not a skewed host's: a dead agent's heartbeat ages on the API's clock", async () => {
    const ledger = new FakeLedger();
    const serverClock = new ServerClock();
    const behind = -10 * 60_000;
    serverClock.observe(new Date(Date.now() + behind).toUTCString());
    const blobs: BlobSource = { open: async () => Promise.reject(new Error('no blobs here')) };
    const { options: o } = options(ledger, blobs, { serverClock });
    const agent = await startAgent(o);
    await until(() => ledger.rows.length > 0);
    await agent.stop();
    for (const row of ledger.rows) {
      expect(Math.abs(Date.parse(row.heartbeatAt) - (Date.now() + behind))).toBeLessThan(5000);
    }
  });

  it('stop abandons an in-flight download: temp file removed, nothing at the final name, cursor not past it', async () => {
    const ledger = new FakeLedger();
    ledger.commit('slow.bin', 1, Buffer.alloc(1000, 7));
    let started!: () => void;
    const downloading = new Promise<void>((r) => {
      started = r;
    });
    const blobs: BlobSource = {
      open: async (_sha, signal) => {
        async function* body() {
          yield Buffer.alloc(10, 7);
          started();
          await new Promise<void>((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason)),
          );
        }
        return { body: body(), contentLength: 1000, close() {} };
      },
    };
    const { dir, log, options: o } = options(ledger, blobs);
    const agent = await startAgent(o);
    await downloading;
    expect((await readdir(dir)).some((name) => name.includes('.mirror-tmp-'))).toBe(true);
    await agent.stop();
    expect((await readdir(dir)).sort()).toEqual(['.media-mirror']);
    expect(agent.stats().cursor).toEqual([0]);
    expect(log.entries.some((e) => e.msg.startsWith('abandoning in-flight downloads'))).toBe(true);
  });
  it("the mirror folder swapped for a symlink while it runs: nothing lands in the link's target, one error line, it stops with exit 73", async () => {
    const { ledger, commit, blobs } = ledgerWithBlobs();
    commit('a/first.txt', 1, 'before the swap');
    const { dir, log, options: o } = options(ledger, blobs);
    const agent = await startAgent(o);
    await until(() => agent.stats().applied === 1);
    // Someone who can write the folder's parent: mv /srv/media /srv/media.old; ln -s /elsewhere /srv/media.
    // The target has the folders a write (and the state's snapshot) would go into.
    const elsewhere = `${dir}-elsewhere`;
    await mkdir(join(elsewhere, 'a'), { recursive: true });
    await mkdir(join(elsewhere, '.media-mirror'));
    await rename(dir, `${dir}.old`);
    await symlink(elsewhere, dir);
    commit('a/second.txt', 1, 'after the swap');
    commit('b/third.txt', 1, 'after the swap too');
    try {
      await agent.catchUp('test').catch(() => undefined);
      await until(() => agent.stats().status === 'stopped').catch(() => undefined);
      expect((await readdir(elsewhere, { recursive: true })).sort()).toEqual(['.media-mirror', 'a']);
      expect(agent.stats()).toMatchObject({ status: 'stopped', applied: 1 });
      expect(agent.failure?.exitCode).toBe(73);
      const errors = log.entries.filter((e) => e.level === 'error');
      expect(errors).toHaveLength(1);
      expect(errors[0]?.msg).toMatch(/mirror folder .* is now a symlink.*put the folder back/);
      // The folder it started on keeps its file and its state, which never records the new versions.
      expect(await readFile(join(`${dir}.old`, 'a/first.txt'), 'utf8')).toBe('before the swap');
      const journal = await readFile(join(`${dir}.old`, '.media-mirror', 'state.journal'), 'utf8');
      expect(journal).not.toMatch(/second|third/);
    } finally {
      await agent.stop();
    }
  });
});

describe('agent output', () => {
  it('the status line shows files/s, bytes/s, backlog and lag', () => {
    const line = formatStatusLine({
      targetId: 'onprem-dc1',
      applied: 1234,
      filesPerSecond: 12.34,
      bytesPerSecond: 5 * 1024 * 1024,
      inFlight: 3,
      backlogQueue: 17,
      backlogFeed: 2,
      lagSeconds: 4.2,
      refused: 1,
      catchingUp: true,
      conditions: ['network'],
    });
    expect(line).toBe(
      'onprem-dc1 (catching up) | 1234 applied | 12.3 files/s | 5.0 MiB/s | 3 in flight | ' +
        'backlog 17 queued, 2 in feed | lag 4.2 s | 1 refused | waiting: network',
    );
  });

  it('on a terminal, events print above one rewritten status line', () => {
    let out = '';
    const log = createTtyLog({ write: (s: string) => (out += s), columns: 200 }, { now: () => new Date(0) });
    log.status({
      targetId: 't1',
      applied: 1,
      filesPerSecond: 0,
      bytesPerSecond: 0,
      inFlight: 0,
      backlogQueue: 0,
      backlogFeed: 0,
      lagSeconds: 0,
      refused: 0,
      catchingUp: false,
      conditions: [],
    });
    log.log('warn', 'refused', { path: 'x' });
    log.file('applied', { path: 'y' });
    log.close();
    const screens = out.split('\r\x1b[2K').filter(Boolean);
    expect(screens[0]).toMatch(/^t1 \| 1 applied/);
    expect(screens[1]).toMatch(/WARN refused path="x"\n$/);
    expect(screens[2]).toMatch(/^t1 \| 1 applied/);
    expect(out).not.toContain('path="y"');
  });

  it('on a terminal, a name with bidirectional or escape characters is shown escaped', () => {
    let out = '';
    const log = createTtyLog({ write: (s: string) => (out += s), columns: 200 }, { now: () => new Date(0) });
    log.log('warn', 'refused', { path: 'invoice\u202egpj.exe', reason: 'bell\x07' });
    log.close();
    expect(out).toContain('path="invoice\\u202egpj.exe"');
    expect(out).not.toContain('\u202e');
    expect(out).not.toContain('\x07');
  });
});
