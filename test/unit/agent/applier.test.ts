import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Applier, isKeptAsideName, type VersionInfo } from '../../../agent/applier.ts';
import { NotYetError, RefusedError } from '../../../agent/errors.ts';
import type { BlobSource, LedgerView } from '../../../agent/ports.ts';
import { SafePaths } from '../../../agent/safe-path.ts';
import { StateStore } from '../../../agent/state-store.ts';
import { BandwidthLimiter } from '../../../agent/util.ts';
import type { FileVersion } from '../../../contracts/model.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
let base: string;
let counter = 0;
const opened: StateStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-applier-'));
});
afterAll(async () => {
  for (const state of opened) await state.close().catch(() => undefined);
  await rm(base, { recursive: true, force: true });
});

/** An origin and a ledger in memory: blobs by hash, versions by path and number. */
class World {
  readonly blobs = new Map<string, Buffer>();
  readonly versions = new Map<string, FileVersion>();
  readonly reported: { path: string; version: number }[] = [];
  opens = 0;
  /** Bytes served instead of the real blob (a corrupted origin). */
  readonly corrupt = new Map<string, Buffer>();
  /** Pauses the download of a blob after its first chunk until released. */
  hold: { sha: string; reached: () => void; release: Promise<void> } | undefined;

  commit(path: string, version: number, content: string | null): VersionInfo {
    const bytes = content === null ? null : Buffer.from(content);
    const v: FileVersion = {
      path,
      version,
      sha256: bytes ? sha(bytes) : null,
      size: bytes?.length ?? 0,
      contentType: null,
      deleted: bytes === null,
      committedAt: new Date(Date.UTC(2024, 0, 1, 0, 0, version)).toISOString(),
      uploadId: `u-${path}-${version}`,
    };
    if (bytes) this.blobs.set(sha(bytes), bytes);
    this.versions.set(`${path}#${version}`, v);
    return v;
  }

  blobSource(): BlobSource {
    return {
      open: async (sha256, signal) => {
        this.opens++;
        const found = this.corrupt.get(sha256) ?? this.blobs.get(sha256);
        if (!found) throw new RefusedError('missing-blob', `no blobs/${sha256}`);
        const bytes: Buffer = found;
        const hold = this.hold?.sha === sha256 ? this.hold : undefined;
        async function* chunks() {
          for (let i = 0; i < bytes.length; i += 3) {
            if (i > 0 && hold) {
              hold.reached();
              await hold.release;
            }
            if (signal.aborted) throw signal.reason;
            yield bytes.subarray(i, i + 3);
          }
        }
        return { body: chunks(), contentLength: bytes.length, close: () => undefined };
      },
    };
  }

  ledger(): Pick<LedgerView, 'getVersion' | 'recordApplied'> {
    return {
      getVersion: async (path, version) => this.versions.get(`${path}#${version}`),
      recordApplied: async (path, version) => {
        this.reported.push({ path, version });
      },
    };
  }
}

async function setup(options: { pathPrefix?: string } = {}) {
  const dir = join(base, `mirror-${++counter}`);
  const paths = await SafePaths.open(dir);
  const state = await StateStore.open(join(dir, '.media-mirror'), {
    targetId: 'onprem-dc1',
    table: 'ledger',
    feedShards: 1,
  });
  opened.push(state);
  const world = new World();
  const applier = new Applier({
    paths,
    state,
    blobs: world.blobSource(),
    ledger: world.ledger(),
    limiter: new BandwidthLimiter(undefined),
    pathPrefix: options.pathPrefix,
  });
  const signal = new AbortController().signal;
  const apply = (v: VersionInfo, source: 'queue' | 'feed' = 'queue') => applier.apply(v, { signal, source });
  const read = (path: string) => readFile(join(dir, path), 'utf8').catch(() => undefined);
  const listing = async (folder = '') =>
    (await readdir(join(dir, folder)).catch(() => [] as string[]))
      .filter((n) => n !== '.media-mirror')
      .sort();
  return { dir, paths, state, world, applier, apply, read, listing };
}

describe('applier: order, duplicates, never backwards', () => {
  it('applies newer versions, skips older and equal ones, whatever the delivery order', async () => {
    const t = await setup();
    const v1 = t.world.commit('a/x.txt', 1, 'one');
    const v2 = t.world.commit('a/x.txt', 2, 'two');
    const v3 = t.world.commit('a/x.txt', 3, 'three');
    expect((await t.apply(v1)).kind).toBe('applied');
    expect((await t.apply(v3)).kind).toBe('applied');
    expect(await t.apply(v2)).toEqual({ kind: 'skipped', heldVersion: 3 });
    expect(await t.apply(v3)).toEqual({ kind: 'skipped', heldVersion: 3 });
    expect(await t.read('a/x.txt')).toBe('three');
    expect(t.state.get('a/x.txt')?.version).toBe(3);
    expect(await t.listing('a')).toEqual(['x.txt']);
  });

  it("a state that holds a version the ledger does not know (a ledger restored from a backup) does not hold back the ledger's versions; repair applies the ledger's head", async () => {
    const t = await setup();
    t.world.commit('r/x.txt', 1, 'one');
    const v5 = t.world.commit('r/x.txt', 5, 'five');
    expect((await t.apply(v5)).kind).toBe('applied');
    // The ledger goes back in time: versions 2 to 5 are gone, and 2 is committed anew.
    for (const n of [2, 3, 4, 5]) t.world.versions.delete(`r/x.txt#${n}`);
    const v2 = t.world.commit('r/x.txt', 2, 'two, after the restore');
    t.world.reported.length = 0;
    expect((await t.apply(v2)).kind).toBe('applied');
    expect(await t.read('r/x.txt')).toBe('two, after the restore');
    expect(t.state.get('r/x.txt')?.version).toBe(2);
    expect(t.world.reported).toEqual([{ path: 'r/x.txt', version: 2 }]);
    // Repair (agent verify --repair) applies the ledger's head even below a version the ledger knows.
    const v3 = t.world.commit('r/x.txt', 3, 'three');
    expect((await t.apply(v3)).kind).toBe('applied');
    const repaired = await t.applier.apply(v2, {
      signal: new AbortController().signal,
      source: 'repair',
      force: true,
    });
    expect(repaired.kind).toBe('applied');
    expect(await t.read('r/x.txt')).toBe('two, after the restore');
  });

  it("a new version of the same bytes (a restore, another content type) keeps the file and takes that version's time", async () => {
    const t = await setup();
    const v1 = t.world.commit('m/same.txt', 1, 'same bytes');
    const v2 = t.world.commit('m/same.txt', 2, 'same bytes');
    expect((await t.apply(v1)).kind).toBe('applied');
    expect((await stat(join(t.dir, 'm/same.txt'))).mtime.toISOString()).toBe(v1.committedAt);
    expect(await t.apply(v2)).toMatchObject({ kind: 'applied', adopted: true, bytes: 0 });
    expect((await stat(join(t.dir, 'm/same.txt'))).mtime.toISOString()).toBe(v2.committedAt);
  });

  it('a late tombstone of an older version does not delete the newer file; a newer one does', async () => {
    const t = await setup();
    t.world.commit('p.txt', 1, 'one');
    const v2 = t.world.commit('p.txt', 2, null);
    const v3 = t.world.commit('p.txt', 3, 'three');
    await t.apply(v3);
    expect((await t.apply(v2)).kind).toBe('skipped');
    expect(await t.read('p.txt')).toBe('three');
    const v4 = t.world.commit('p.txt', 4, null);
    expect((await t.apply(v4)).kind).toBe('deleted');
    expect(await t.read('p.txt')).toBeUndefined();
    // A tombstone for a path that never reached this folder is fine too.
    expect((await t.apply(t.world.commit('never/here.txt', 1, null))).kind).toBe('deleted');
    // ... and an older upload arriving after the delete does not resurrect the file.
    expect((await t.apply(v3)).kind).toBe('skipped');
    expect(await t.read('p.txt')).toBeUndefined();
  });

  it('a delete takes the folders it leaves empty with it: a folder name can then become a file', async () => {
    const t = await setup();
    await t.apply(t.world.commit('d/e/b.txt', 1, 'under'));
    await t.apply(t.world.commit('d/keep.txt', 1, 'stays'));
    expect((await t.apply(t.world.commit('d/e/b.txt', 2, null))).kind).toBe('deleted');
    // d/e held nothing else: gone; d still holds keep.txt.
    expect(await t.listing('d')).toEqual(['keep.txt']);
    expect((await t.apply(t.world.commit('d/keep.txt', 2, null))).kind).toBe('deleted');
    expect(await t.listing()).toEqual([]);
    // The former folder's name as a file.
    expect((await t.apply(t.world.commit('d', 1, 'now a file'))).kind).toBe('applied');
    expect(await t.read('d')).toBe('now a file');
  });

  it('a delete under a path that is now a file is done (nothing is there), not a conflict, however often it comes', async () => {
    const t = await setup();
    // Caught up from two feed shards: the file `x` first, then the file once under it and its delete.
    expect((await t.apply(t.world.commit('x', 1, 'a file now'))).kind).toBe('applied');
    expect(await t.apply(t.world.commit('x/child.txt', 1, 'was under x'))).toMatchObject({
      kind: 'refused',
      code: 'path-conflict',
    });
    const deleted = t.world.commit('x/child.txt', 2, null);
    expect((await t.apply(deleted, 'feed')).kind).toBe('deleted');
    // Its queue message, a redelivery, a reconcile's resend: each done again, never refused (probe 11, U8).
    for (const source of ['queue', 'queue'] as const)
      expect((await t.apply(deleted, source)).kind).not.toBe('refused');
    expect(t.world.reported).toContainEqual({ path: 'x/child.txt', version: 2 });
    expect(await t.read('x')).toBe('a file now');
    // A write under the file is still a conflict.
    expect(await t.apply(t.world.commit('x/child.txt', 3, 'again'))).toMatchObject({
      kind: 'refused',
      code: 'path-conflict',
    });
  });

  it('a file the agent never wrote, with other bytes, is kept beside the mirror’s, not overwritten (probe 11, U1)', async () => {
    const t = await setup();
    await mkdir(join(t.dir, 'notes'));
    await writeFile(join(t.dir, 'notes', 'todo.txt'), 'someone’s own notes');
    const outcome = await t.apply(t.world.commit('notes/todo.txt', 1, 'the mirror’s file'));
    expect(outcome).toMatchObject({
      kind: 'applied',
      keptAside: expect.stringMatching(/^notes\/todo\.mm-conflict-\d{8}T\d{6}Z\.txt$/),
    });
    expect(await t.read('notes/todo.txt')).toBe('the mirror’s file');
    const keptAside = (outcome as { keptAside: string }).keptAside;
    expect(await t.read(keptAside)).toBe('someone’s own notes');
    expect(await t.listing('notes')).toEqual([keptAside.slice('notes/'.length), 'todo.txt'].sort());
    // The same bytes are adopted, and the agent's own file is replaced by the next version as before.
    await writeFile(join(t.dir, 'same.txt'), 'same bytes');
    expect(await t.apply(t.world.commit('same.txt', 1, 'same bytes'))).toMatchObject({
      kind: 'applied',
      adopted: true,
    });
    expect(await t.apply(t.world.commit('notes/todo.txt', 2, 'the next version'))).not.toHaveProperty(
      'keptAside',
    );
    expect(await t.listing('notes')).toHaveLength(2);
  });

  it('a file the agent never wrote whose name has a long extension (more bytes after its last dot than the kept-aside mark leaves) is kept beside under a name that fits, not spun on for good (probe pathfs)', async () => {
    const t = await setup();
    // 244 bytes: a name the path rules admit, 241 of them after its last dot.
    const name = `第1.${'章'.repeat(80)}`;
    await writeFile(join(t.dir, name), 'someone’s chapter');
    const outcome = await t.apply(t.world.commit(name, 1, 'the mirror’s chapter'));
    expect(outcome).toMatchObject({ kind: 'applied' });
    const keptAside = (outcome as { keptAside: string }).keptAside;
    expect(Buffer.byteLength(keptAside)).toBeLessThanOrEqual(255);
    expect(keptAside).toMatch(/^第\.mm-conflict-\d{8}T\d{6}Z\.章+$/);
    expect(isKeptAsideName(keptAside)).toBe(true);
    expect(await t.read(keptAside)).toBe('someone’s chapter');
    expect(await t.read(name)).toBe('the mirror’s chapter');
    // A delete keeps such a file aside the same way.
    await t.apply(t.world.commit(name, 2, null));
    await writeFile(join(t.dir, name), 'someone’s chapter, again');
    expect(await t.apply(t.world.commit(name, 3, null), 'feed')).toMatchObject({
      kind: 'deleted',
      keptAside: expect.stringMatching(/^第\.mm-conflict-/),
    });
  });

  it('a delete finds a file the agent never wrote at the path: kept beside, not removed; the mirror’s own bytes are removed (probe agent3)', async () => {
    const t = await setup();
    t.world.commit('notes/plan.txt', 1, 'the mirror’s plan');
    const deleted = t.world.commit('notes/plan.txt', 2, null);
    // Someone saves their own file under a name the mirror has since deleted; the agent catches up.
    await mkdir(join(t.dir, 'notes'));
    await writeFile(join(t.dir, 'notes', 'plan.txt'), 'someone’s own plan');
    expect((await t.apply(deleted, 'feed')).kind).toBe('deleted');
    expect(await t.read('notes/plan.txt')).toBeUndefined();
    const kept = await t.listing('notes');
    expect(kept).toEqual([expect.stringMatching(/^plan\.mm-conflict-\d{8}T\d{6}Z\.txt$/)]);
    expect(await t.read(`notes/${kept[0]}`)).toBe('someone’s own plan');
    // The queue's copy of the delete finds the path empty: done, nothing more moved.
    expect((await t.apply(deleted, 'queue')).kind).toBe('skipped');
    expect(await t.listing('notes')).toEqual(kept);
    // A file holding one of the path's earlier versions is the mirror's own: removed.
    t.world.commit('old.txt', 1, 'version one');
    await writeFile(join(t.dir, 'old.txt'), 'version one');
    expect((await t.apply(t.world.commit('old.txt', 2, null), 'feed')).kind).toBe('deleted');
    expect(await t.listing()).toEqual(['notes']);
    // verify --repair removes an extra at a deleted path, as it removes every other extra.
    await writeFile(join(t.dir, 'notes', 'plan.txt'), 'saved again');
    const repaired = await t.applier.apply(deleted, {
      signal: new AbortController().signal,
      source: 'repair',
      force: true,
    });
    expect(repaired).toEqual({ kind: 'deleted' });
    expect(await t.listing('notes')).toEqual(kept);
  });

  it('a file holding an earlier version of the path is the mirror’s (a lost state, a crash before the state was saved): replaced, not kept aside', async () => {
    const t = await setup();
    t.world.commit('old.txt', 1, 'version one');
    t.world.commit('old.txt', 2, 'version two');
    // The folder holds version 1, its state knows nothing of it (state folder lost; agent far behind).
    await writeFile(join(t.dir, 'old.txt'), 'version one');
    const outcome = await t.apply(t.world.commit('old.txt', 3, 'version three'));
    expect(outcome).toMatchObject({ kind: 'applied', adopted: false });
    expect(outcome).not.toHaveProperty('keptAside');
    expect(await t.listing()).toEqual(['old.txt']);
    expect(await t.read('old.txt')).toBe('version three');
  });

  it('an empty folder where a file goes (left by anyone) gives way; one holding files is a conflict', async () => {
    const t = await setup();
    await mkdir(join(t.dir, 'empty', 'nested'), { recursive: true });
    expect((await t.apply(t.world.commit('empty', 1, 'file'))).kind).toBe('applied');
    expect(await t.read('empty')).toBe('file');
    await mkdir(join(t.dir, 'full'));
    await writeFile(join(t.dir, 'full', 'local.txt'), 'not the mirror’s');
    expect(await t.apply(t.world.commit('full', 1, 'file'))).toMatchObject({
      kind: 'refused',
      code: 'path-conflict',
    });
    expect(await t.read('full/local.txt')).toBe('not the mirror’s');
  });

  it('a file of its own in the way of a new path, which the ledger has deleted since, makes the path wait, not refused; someone’s file still refuses it (probe pathfs)', async () => {
    const t = await setup();
    // `a` was a file, then deleted, then `a/b.txt` came: another feed shard brings `a`'s delete later.
    await t.apply(t.world.commit('a', 1, 'a file first'));
    const gone = t.world.commit('a', 2, null);
    const under = t.world.commit('a/b.txt', 1, 'under a folder now');
    await expect(t.apply(under, 'feed')).rejects.toBeInstanceOf(NotYetError);
    expect((await t.apply(gone, 'feed')).kind).toBe('deleted');
    expect((await t.apply(under, 'feed')).kind).toBe('applied');
    expect(await t.read('a/b.txt')).toBe('under a folder now');

    // The reverse: `d/e.txt` held, deleted, then `d` as a file, before the delete is applied.
    await t.apply(t.world.commit('d/e.txt', 1, 'in a folder first'));
    const removed = t.world.commit('d/e.txt', 2, null);
    const file = t.world.commit('d', 1, 'a file now');
    await expect(t.apply(file, 'feed')).rejects.toBeInstanceOf(NotYetError);
    expect((await t.apply(removed, 'feed')).kind).toBe('deleted');
    expect((await t.apply(file, 'feed')).kind).toBe('applied');
    expect(await t.read('d')).toBe('a file now');

    // With no newer version in the ledger, or with someone's file there, it is a conflict as before.
    await t.apply(t.world.commit('k', 1, 'still live'));
    expect(await t.apply(t.world.commit('k/x.txt', 1, 'x'))).toMatchObject({ code: 'path-conflict' });
    await t.apply(t.world.commit('f/own.txt', 1, 'the mirror’s'));
    t.world.commit('f/own.txt', 2, null);
    await writeFile(join(t.dir, 'f', 'theirs.txt'), 'someone’s');
    expect(await t.apply(t.world.commit('f', 1, 'file'))).toMatchObject({ code: 'path-conflict' });
  });

  it('a delete that finds a folder at its path (its files’ deletes not applied yet) is done: nothing of it is there (probe pathfs)', async () => {
    const t = await setup();
    // `w/in.txt` held, then deleted; `w` written as a file and deleted; the feed brings `w`'s delete first.
    await t.apply(t.world.commit('w/in.txt', 1, 'in a folder'));
    const inDeleted = t.world.commit('w/in.txt', 2, null);
    t.world.commit('w', 1, 'a file for a while');
    expect((await t.apply(t.world.commit('w', 2, null), 'feed')).kind).toBe('deleted');
    expect(t.state.get('w')).toMatchObject({ version: 2, deleted: true });
    expect(await t.read('w/in.txt')).toBe('in a folder');
    expect((await t.apply(inDeleted, 'feed')).kind).toBe('deleted');
    expect(await t.listing()).not.toContain('w');
  });

  it('a duplicate from the queue reports to the ledger again (its first report may have been lost)', async () => {
    const t = await setup();
    const v1 = t.world.commit('dup.txt', 1, 'x');
    await t.apply(v1);
    await t.apply(v1, 'queue');
    await t.apply(v1, 'feed');
    expect(t.world.reported).toEqual([
      { path: 'dup.txt', version: 1 },
      { path: 'dup.txt', version: 1 },
    ]);
  });

  it('a duplicate finds the file removed or changed by hand: the held version is written back before it is reported', async () => {
    const t = await setup();
    const v1 = t.world.commit('gone.txt', 1, 'first');
    const v2 = t.world.commit('gone.txt', 2, 'second');
    await t.apply(v2);
    await rm(join(t.dir, 'gone.txt'));
    // The same version again, and an older one: neither reports a copy the folder no longer has.
    expect((await t.apply(v2, 'queue')).kind).toBe('applied');
    expect(await t.read('gone.txt')).toBe('second');
    await writeFile(join(t.dir, 'gone.txt'), 'edited by hand, longer');
    expect((await t.apply(v1, 'queue')).kind).toBe('applied');
    expect(await t.read('gone.txt')).toBe('second');
    expect(t.world.reported).toEqual([
      { path: 'gone.txt', version: 2 },
      { path: 'gone.txt', version: 2 },
      { path: 'gone.txt', version: 2 },
    ]);
    // A deleted path that a file reappeared at: removed again.
    const v3 = t.world.commit('gone.txt', 3, null);
    await t.apply(v3);
    await writeFile(join(t.dir, 'gone.txt'), 'back from the dead');
    expect((await t.apply(v3, 'queue')).kind).toBe('deleted');
    expect(await t.read('gone.txt')).toBeUndefined();
    // Untouched: a plain skip, no download.
    const opens = t.world.opens;
    expect((await t.apply(v3, 'queue')).kind).toBe('skipped');
    expect(t.world.opens).toBe(opens);
  });

  it('property: any delivery order, with duplicates and concurrency, ends at the newest version', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        async (count, picks, lastIsDelete) => {
          const t = await setup();
          const versions = Array.from({ length: count }, (_, i) =>
            t.world.commit('race.bin', i + 1, lastIsDelete && i === count - 1 ? null : `content ${i + 1}`),
          );
          const deliveries = [
            ...picks.map((p) => versions[p % count] as VersionInfo),
            versions[count - 1] as VersionInfo,
          ];
          // Half in parallel, half one by one.
          const half = Math.floor(deliveries.length / 2);
          await Promise.all(deliveries.slice(0, half).map((v) => t.apply(v)));
          for (const v of deliveries.slice(half)) await t.apply(v);
          expect(t.state.get('race.bin')?.version).toBe(count);
          expect(await t.read('race.bin')).toBe(lastIsDelete ? undefined : `content ${count}`);
          expect(await t.listing()).toEqual(lastIsDelete ? [] : ['race.bin']);
          await t.state.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('applier: verification', () => {
  it('refuses bytes that do not match, keeps the previous file, leaves no temp file', async () => {
    const t = await setup();
    await t.apply(t.world.commit('img.png', 1, 'the old picture'));
    const v2 = t.world.commit('img.png', 2, 'the new picture');
    t.world.corrupt.set(v2.sha256 as string, Buffer.from('the new pictur3'));
    const outcome = await t.apply(v2);
    expect(outcome).toMatchObject({ kind: 'refused', code: 'content-mismatch' });
    expect(await t.read('img.png')).toBe('the old picture');
    expect(await t.listing()).toEqual(['img.png']);
    expect(t.state.get('img.png')?.version).toBe(1);
    // Too many bytes is caught while streaming.
    t.world.corrupt.set(v2.sha256 as string, Buffer.from('the new picture, and then some more'));
    expect(await t.apply(v2)).toMatchObject({ kind: 'refused', code: 'content-mismatch' });
  });

  it('a file larger than the file system takes (EFBIG: FAT32 past 4 GiB, a file size limit) is refused and counted, not retried for good; no temp file left', async () => {
    const t = await setup();
    const big = t.world.commit('video.mp4', 1, 'x'.repeat(200_000));
    const small = t.world.commit('note.txt', 1, 'fits');
    // This process's file size limit at 64 KiB, as a FAT32 volume's 4 GiB is to a larger file.
    execFileSync('prlimit', ['--pid', String(process.pid), '--fsize=65536:unlimited']);
    try {
      expect(await t.apply(big)).toMatchObject({ kind: 'refused', code: 'too-large-for-filesystem' });
      expect((await t.apply(small)).kind).toBe('applied');
    } finally {
      execFileSync('prlimit', ['--pid', String(process.pid), '--fsize=unlimited:unlimited']);
    }
    expect(await t.listing()).toEqual(['note.txt']);
    expect(t.state.get('video.mp4')).toBeUndefined();
  });

  it('refuses a message the ledger does not back', async () => {
    const t = await setup();
    const v1 = t.world.commit('m.txt', 1, 'real');
    expect(await t.apply({ ...v1, version: 7 })).toMatchObject({ kind: 'refused', code: 'unknown-version' });
    expect(await t.apply({ ...v1, sha256: sha('forged') })).toMatchObject({
      kind: 'refused',
      code: 'ledger-mismatch',
    });
    expect(await t.apply({ ...v1, size: 99 })).toMatchObject({ kind: 'refused', code: 'ledger-mismatch' });
    expect(await t.apply({ ...v1, deleted: true, sha256: null })).toMatchObject({
      kind: 'refused',
      code: 'ledger-mismatch',
    });
    expect(await t.read('m.txt')).toBeUndefined();
  });

  it('keeps a file that already has the right bytes (no download)', async () => {
    const t = await setup();
    const v1 = t.world.commit('seeded.txt', 1, 'already here');
    await writeFile(join(t.dir, 'seeded.txt'), 'already here');
    expect(await t.apply(v1)).toEqual({ kind: 'applied', bytes: 0, adopted: true });
    expect(t.world.opens).toBe(0);
    expect(t.state.get('seeded.txt')?.version).toBe(1);
  });

  it('ignores paths outside the target selection; refuses escaping ones', async () => {
    const t = await setup({ pathPrefix: 'public/' });
    expect((await t.apply(t.world.commit('private/x.txt', 1, 'x'))).kind).toBe('not-selected');
    expect((await t.apply(t.world.commit('public/x.txt', 1, 'x'))).kind).toBe('applied');
    expect(await t.apply(t.world.commit('public/../../x.txt', 1, 'x'))).toMatchObject({
      kind: 'refused',
      code: 'unsafe-path',
    });
  });

  it('an abandoned download removes its temp file and leaves the final name alone', async () => {
    const t = await setup();
    await t.apply(t.world.commit('big.bin', 1, 'old content'));
    const v2 = t.world.commit('big.bin', 2, 'a much longer new content');
    let reached!: () => void;
    const atChunk = new Promise<void>((r) => {
      reached = r;
    });
    let release!: () => void;
    t.world.hold = { sha: v2.sha256 as string, reached, release: new Promise((r) => (release = r)) };
    const controller = new AbortController();
    const running = t.applier.apply(v2, { signal: controller.signal, source: 'queue' });
    await atChunk;
    const mid = await readdir(t.dir);
    expect(mid.some((n) => n.startsWith('.big.bin.mirror-tmp-'))).toBe(true);
    controller.abort(new Error('stopping'));
    release();
    await expect(running).rejects.toThrow('stopping');
    expect(await t.listing()).toEqual(['big.bin']);
    expect(await t.read('big.bin')).toBe('old content');
    expect(t.state.get('big.bin')?.version).toBe(1);
  });
});
