/**
 * `agent verify` with in-memory ports: a feed-shard count it cannot trust (another than the one
 * the agent's state records, or fewer shards than the ledger's feed has) stops it with exit 78
 * before anything is read as "extra", so `--repair` never removes live files.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withDefaults } from '../../../agent/config.ts';
import { AgentConfigError } from '../../../agent/errors.ts';
import type { BlobSource, LedgerView } from '../../../agent/ports.ts';
import { StateStore } from '../../../agent/state-store.ts';
import { verifyMirror } from '../../../agent/verify.ts';
import type { Change } from '../../../contracts/model.ts';

let base: string;
let n = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-verify-unit-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

/** A feed with one file per shard, `s<shard>.txt`, holding `file <shard>`; the folder holds them all. */
async function mirrored(shards: number) {
  const dir = join(base, `mirror-${++n}`);
  await mkdir(dir, { recursive: true });
  const feed: Change[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const text = `file ${shard}`;
    const at = new Date().toISOString();
    feed.push({
      path: `s${shard}.txt`,
      version: 1,
      sha256: sha(text),
      size: text.length,
      contentType: null,
      deleted: false,
      committedAt: at,
      shard,
      seq: 1,
      appendedAt: at,
    });
    await writeFile(join(dir, `s${shard}.txt`), text);
  }
  const ledger = {
    readFeed: async (shard: number, after: number, limit: number) =>
      feed.filter((c) => c.shard === shard && c.seq > after).slice(0, limit),
  } as unknown as LedgerView;
  const blobs: BlobSource = {
    open: async () => {
      throw new Error('nothing to fetch');
    },
  };
  return { dir, ledger, blobs };
}

const config = (dir: string, feedShards: number, feedShardsFrom?: string) =>
  withDefaults({
    targetId: 'onprem-dc1',
    dir,
    table: 'ledger',
    originBucket: 'origin',
    queueUrl: '',
    feedShards,
    ...(feedShardsFrom ? { feedShardsFrom } : {}),
  });

describe('agent verify and the feed shard count', () => {
  it('refuses (78) a count other than the one the state records, naming both and their sources; --repair removes nothing', async () => {
    const { dir, ledger, blobs } = await mirrored(4);
    const state = await StateStore.open(join(dir, '.media-mirror'), {
      targetId: 'onprem-dc1',
      table: 'ledger',
      feedShards: 4,
    });
    await state.close();

    const error = await verifyMirror(config(dir, 3, 'MIRROR_FEED_SHARDS'), {
      repair: true,
      ports: { ledger, blobs },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as AgentConfigError).exitCode).toBe(78);
    const message = (error as Error).message;
    expect(message).toMatch(/MIRROR_FEED_SHARDS gives 3 feed shards/);
    expect(message).toContain(`the state in ${join(dir, '.media-mirror')} records 4`);
    expect((await readdir(dir)).filter((f) => f.endsWith('.txt')).sort()).toEqual([
      's0.txt',
      's1.txt',
      's2.txt',
      's3.txt',
    ]);
  });

  it('refuses (78) a count smaller than the feed (entries under FEED#<count>) even without a state; --repair removes nothing', async () => {
    const { dir, ledger, blobs } = await mirrored(4);
    const error = await verifyMirror(config(dir, 3), { repair: true, ports: { ledger, blobs } }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as Error).message).toMatch(/gives 3 feed shards.*entries under FEED#3/s);
    expect((await readdir(dir)).filter((f) => f.endsWith('.txt'))).toHaveLength(4);
  });

  it("with the deployment's count, verify finds no drift and --repair still removes a real extra", async () => {
    const { dir, ledger, blobs } = await mirrored(4);
    await writeFile(join(dir, 'extra.txt'), 'not in the ledger');
    const report = await verifyMirror(config(dir, 4), { repair: true, ports: { ledger, blobs } });
    expect(report.ok).toBe(4);
    expect(report.extra.map((e) => e.path)).toEqual(['extra.txt']);
    expect(report.repaired?.removed).toBe(1);
    expect((await readdir(dir)).filter((f) => f.endsWith('.txt'))).toHaveLength(4);
  });

  it('a file the agent kept aside (<stem>.mm-conflict-<time><ext>) is reported as kept, not drift, and --repair leaves it (probe agent3)', async () => {
    const { dir, ledger, blobs } = await mirrored(4);
    await mkdir(join(dir, 'notes'));
    await writeFile(join(dir, 'notes', 'plan.mm-conflict-20261202T013209Z.txt'), 'someone’s own plan');
    await writeFile(join(dir, 'todo.mm-conflict-20261202T013209Z-1'), 'someone’s own list');
    await writeFile(join(dir, 'extra.txt'), 'not in the ledger');
    const report = await verifyMirror(config(dir, 4), { repair: true, ports: { ledger, blobs } });
    expect(report.extra.map((e) => e.path)).toEqual(['extra.txt']);
    expect(report.keptAside).toEqual([
      'notes/plan.mm-conflict-20261202T013209Z.txt',
      'todo.mm-conflict-20261202T013209Z-1',
    ]);
    expect(report.repaired?.removed).toBe(1);
    expect(await readdir(join(dir, 'notes'))).toEqual(['plan.mm-conflict-20261202T013209Z.txt']);
    expect(await readdir(dir)).toContain('todo.mm-conflict-20261202T013209Z-1');
  });

  it('--repair on a mirror folder swapped for a symlink while it runs: writes and removes nothing there, exits 73', async () => {
    const { dir, ledger, blobs } = await mirrored(2);
    await rm(join(dir, 's1.txt'));
    const elsewhere = `${dir}-elsewhere`;
    await mkdir(join(elsewhere, '.media-mirror'), { recursive: true });
    await writeFile(join(elsewhere, 'theirs.txt'), "not the mirror's");
    // The swap comes once verify has opened the folder and its state (it holds the state's lock).
    let swapped = false;
    const swapping = {
      readFeed: async (shard: number, after: number, limit: number) => {
        if (!swapped && existsSync(join(dir, '.media-mirror', 'agent.lock'))) {
          swapped = true;
          await rename(dir, `${dir}.old`);
          await symlink(elsewhere, dir);
        }
        return ledger.readFeed(shard, after, limit);
      },
      // What a fetch of the missing file asks: its version record, then where to report it.
      getVersion: async (path: string) =>
        (await ledger.readFeed(1, 0, 10)).find((c) => c.path === path && path === 's1.txt'),
      recordApplied: async () => undefined,
    } as unknown as LedgerView;
    const served: BlobSource = {
      open: async () => {
        const data = Buffer.from('file 1');
        return {
          body: [data][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>,
          contentLength: data.length,
          close() {},
        };
      },
    };
    void blobs;
    const error = await verifyMirror(config(dir, 2), {
      repair: true,
      ports: { ledger: swapping, blobs: served },
    }).catch((e: unknown) => e);
    expect((await readdir(elsewhere, { recursive: true })).sort()).toEqual(['.media-mirror', 'theirs.txt']);
    expect(swapped).toBe(true);
    expect((error as { exitCode?: number }).exitCode).toBe(73);
    expect((error as Error).message).toMatch(/is now a symlink/);
  });
});

describe('agent verify and names in another Unicode form', () => {
  /** The ledger's paths are NFC; a file copied in from a Mac (rsync, a share) is named in NFD. */
  it('a file named in NFD beside the ledger’s NFC path is an extra (not the path’s file), and --repair removes it, not the mirror’s (probe pathfs)', async () => {
    const dir = join(base, `mirror-${++n}`);
    await mkdir(join(dir, 'photos'), { recursive: true });
    const at = new Date().toISOString();
    const change = (path: string, version: number, text: string | null, seq: number): Change => ({
      path,
      version,
      sha256: text === null ? null : sha(text),
      size: text === null ? 0 : Buffer.byteLength(text),
      contentType: null,
      deleted: text === null,
      committedAt: at,
      shard: 0,
      seq,
      appendedAt: at,
    });
    const cafe = 'photos/caf\u00e9.jpg';
    const deja = 'photos/d\u00e9j\u00e0.jpg';
    const feed = [
      change(cafe, 1, 'the mirror’s café', 1),
      change(deja, 1, 'déjà', 2),
      change(deja, 2, null, 3),
    ];
    const ledger = {
      readFeed: async (shard: number, after: number, limit: number) =>
        feed.filter((c) => c.shard === shard && c.seq > after).slice(0, limit),
      getVersion: async (path: string, version: number) =>
        feed.find((c) => c.path === path && c.version === version),
      recordApplied: async () => undefined,
    } as unknown as LedgerView;
    const blobs: BlobSource = {
      open: async () => {
        throw new Error('nothing to fetch');
      },
    };
    await writeFile(join(dir, cafe), 'the mirror’s café');
    await writeFile(join(dir, cafe.normalize('NFD')), 'someone’s café, from a Mac');
    await writeFile(join(dir, deja.normalize('NFD')), 'someone’s déjà, from a Mac');

    const report = await verifyMirror(config(dir, 1), { repair: true, ports: { ledger, blobs } });
    expect(report.ok).toBe(1);
    expect(report.extra).toEqual([
      { path: cafe.normalize('NFD'), reason: 'not in the ledger for this target' },
      { path: deja.normalize('NFD'), reason: 'not in the ledger for this target' },
    ]);
    expect(report.repaired).toMatchObject({ removed: 2, failed: [] });
    expect(await readdir(join(dir, 'photos'))).toEqual(['caf\u00e9.jpg']);
    const again = await verifyMirror(config(dir, 1), { repair: false, ports: { ledger, blobs } });
    expect(again.extra).toEqual([]);
  });
});

describe('agent verify and names that are not UTF-8', () => {
  it('a file whose name is not valid UTF-8 (Latin-1 from an old share) is an extra under an escaped name, and --repair removes that very file (probe pathfs)', async () => {
    const { dir, ledger, blobs } = await mirrored(1);
    const latin1 = Buffer.concat([Buffer.from(`${dir}/photo`), Buffer.from([0xe9]), Buffer.from('.jpg')]);
    await writeFile(latin1, 'someone’s photo');
    const report = await verifyMirror(config(dir, 1), { repair: true, ports: { ledger, blobs } });
    expect(report.extra).toEqual([
      {
        path: 'photo\\xe9.jpg',
        reason: expect.stringMatching(/^its name is not valid UTF-8 .*no mirror path names it$/),
      },
    ]);
    expect(report.repaired).toMatchObject({ removed: 1, failed: [] });
    expect(await readdir(dir)).toEqual(['.media-mirror', 's0.txt']);
    expect((await verifyMirror(config(dir, 1), { repair: false, ports: { ledger, blobs } })).extra).toEqual(
      [],
    );
    // A folder so named is reported, not read, and left for a person: the repair says so.
    await mkdir(Buffer.concat([Buffer.from(`${dir}/old`), Buffer.from([0xe9]), Buffer.from('t\u00e9')]));
    const folder = await verifyMirror(config(dir, 1), { repair: true, ports: { ledger, blobs } });
    expect(folder.extra.map((e) => e.path)).toEqual(['old\\xe9t\u00e9']);
    expect(folder.repaired?.failed).toEqual([
      {
        path: 'old\\xe9t\u00e9',
        reason: expect.stringMatching(/a folder, not read: remove or rename it by hand$/),
      },
    ]);
  });
});
