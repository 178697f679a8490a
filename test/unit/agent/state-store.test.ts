import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import {
  appendFile,
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigError } from '../../../agent/errors.ts';
import { StateStore } from '../../../agent/state-store.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const identity = { targetId: 'onprem-dc1', table: 'ledger', feedShards: 4 };
let base: string;
let n = 0;
const fresh = () => join(base, `state-${++n}`);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'mm-state-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const file = (version: number) => ({ version, sha256: 'a'.repeat(64), size: version * 10, deleted: false });

describe('agent state store', () => {
  it('a lower version replaces a higher one only when asked, and a reopen replays it in order', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('x.jpg', file(5));
    await store.recordApplied('x.jpg', file(2));
    expect(store.get('x.jpg')?.version).toBe(5);
    await store.recordApplied('x.jpg', file(2), { replace: true });
    expect(store.get('x.jpg')?.version).toBe(2);
    await store.recordApplied('x.jpg', file(3));
    await store.close();
    const again = await StateStore.open(dir, identity);
    expect(again.get('x.jpg')).toEqual(file(3));
    await again.close();
  });

  it('round-trips paths, cursor and temp records across a close and reopen', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('a.jpg', file(1));
    await store.recordApplied('b/c.jpg', file(3));
    await store.recordApplied('gone.txt', { version: 2, sha256: null, size: 0, deleted: true });
    await store.recordCursor([5, 0, 7, 1]);
    await store.recordTemp('b/.c.jpg.mirror-tmp-1');
    await store.close();
    const again = await StateStore.open(dir, identity);
    expect(again.get('a.jpg')).toEqual(file(1));
    expect(again.get('b/c.jpg')).toEqual(file(3));
    expect(again.get('gone.txt')).toMatchObject({ version: 2, deleted: true });
    expect(again.cursor).toEqual([5, 0, 7, 1]);
    expect(again.leftoverTemps).toEqual(['b/.c.jpg.mirror-tmp-1']);
    again.recordTempDone('b/.c.jpg.mirror-tmp-1');
    await again.close();
    const third = await StateStore.open(dir, identity);
    expect(third.leftoverTemps).toEqual([]);
    await third.close();
  });

  it('never lowers a version or a shard of the cursor', async () => {
    const store = await StateStore.open(fresh(), identity);
    await store.recordApplied('p', file(5));
    await store.recordApplied('p', file(3));
    expect(store.get('p')?.version).toBe(5);
    await store.recordCursor([4, 4, 4, 4]);
    await store.recordCursor([1, 9, 0, 4]);
    expect(store.cursor).toEqual([4, 9, 4, 4]);
    await store.close();
  });

  it("a shard's cursor starts over only when reset (a restored ledger), with its marks, across a reopen and a replay", async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordCursor([5, 6, 7, 8], ['m5', 'm6', 'm7', 'm8']);
    await store.resetCursor(1);
    expect(store.cursor).toEqual([5, 0, 7, 8]);
    expect(store.cursorMark(1)).toBeNull();
    await store.recordCursor([5, 2, 7, 8], [null, 'n2', null, null]);
    await store.recordCursor([9, 2, 7, 8], ['m9', null, null, null]);
    await store.close();
    const journal = await readFile(join(dir, 'state.journal'), 'utf8');
    const expected = { cursor: [9, 2, 7, 8], marks: ['m9', 'n2', 'm7', 'm8'] };
    const seen = (s: StateStore) => ({
      cursor: [...s.cursor],
      marks: [0, 1, 2, 3].map((i) => s.cursorMark(i)),
    });
    const replayed = await StateStore.open(dir, identity);
    expect(seen(replayed)).toEqual(expected);
    await replayed.close();
    // A crash after the snapshot's rename, before the journal's truncation: the journal is replayed over it.
    await appendFile(join(dir, 'state.journal'), journal);
    const again = await StateStore.open(dir, identity);
    expect(seen(again)).toEqual(expected);
    await again.close();
  });

  it('a crash between writing the new snapshot and renaming it keeps every record (old snapshot + journal)', async () => {
    const dir = fresh();
    const first = await StateStore.open(dir, identity);
    await first.recordApplied('one', file(1));
    await first.close(); // snapshot with "one"
    const second = await StateStore.open(dir, identity, {
      // The crash: the temp snapshot is written and fsynced, the rename never happens.
      beforeSnapshotRename: () => {
        throw new Error('simulated crash before rename');
      },
    }).catch((error: Error) => error);
    expect(second).toBeInstanceOf(Error);
    // The process "died" during open: write what a running agent would have journalled meanwhile.
    const third = await StateStore.open(dir, identity);
    await third.recordApplied('two', file(2));
    await third.recordCursor([1, 2, 3, 4]);
    // Now die between the snapshot's fsync and its rename while closing.
    let crashed = false;
    const fourth = await StateStore.open(dir, identity, {
      beforeSnapshotRename: () => {
        if (!crashed) return;
        throw new Error('simulated crash before rename');
      },
    }).catch((error: Error) => error);
    // (fourth opened fine: same process, the lock is ours; it loaded third's journal.)
    expect(fourth).toBeInstanceOf(StateStore);
    crashed = true;
    await (fourth as StateStore).recordApplied('three', file(3));
    await expect((fourth as StateStore).close()).rejects.toThrow(/simulated crash/);
    expect((await readdir(dir)).some((name) => name.startsWith('state.snapshot.tmp-'))).toBe(true);

    const warnings: string[] = [];
    const reopened = await StateStore.open(dir, identity, { warn: (m) => warnings.push(m) });
    expect(reopened.get('one')?.version).toBe(1);
    expect(reopened.get('two')?.version).toBe(2);
    expect(reopened.get('three')?.version).toBe(3);
    expect(reopened.cursor).toEqual([1, 2, 3, 4]);
    expect(warnings.some((w) => w.includes('unfinished state snapshot'))).toBe(true);
    expect((await readdir(dir)).some((name) => name.startsWith('state.snapshot.tmp-'))).toBe(false);
    await reopened.close();
    // `third` stood for a process that died without closing: release its file handle.
    await third.close().catch(() => undefined);
  });

  it('a crash after the rename but before the journal is emptied replays harmlessly', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('x', file(1));
    await store.recordApplied('x', file(2));
    await store.recordCursor([3, 3, 3, 3]);
    await store.flush();
    const journal = await readFile(join(dir, 'state.journal'), 'utf8');
    await store.close(); // new snapshot, empty journal
    await writeFile(join(dir, 'state.journal'), journal); // as if the truncation never happened
    const again = await StateStore.open(dir, identity);
    expect(again.get('x')).toEqual(file(2));
    expect(again.cursor).toEqual([3, 3, 3, 3]);
    await again.close();
  });

  it('ignores a torn last journal line (a crash mid-append) and reports it', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('kept', file(1));
    await store.flush();
    await appendFile(join(dir, 'state.journal'), '{"a":["torn",7,"ab');
    // Simulate kill -9: no close. A new process opens the folder (the lock's pid is ours here).
    const again = await StateStore.open(dir, identity);
    expect(again.get('kept')?.version).toBe(1);
    expect(again.get('torn')).toBeUndefined();
    expect(again.loadReport?.tornTail).toBe(true);
    await again.close();
    await store.close().catch(() => undefined);
  });

  it('refuses a state that belongs to another target or ledger; restarts the cursor when the shard count changes', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('a', file(1));
    await store.recordCursor([9, 9, 9, 9]);
    await store.close();
    await expect(StateStore.open(dir, { ...identity, targetId: 'other-one' })).rejects.toThrow(
      AgentConfigError,
    );
    await expect(StateStore.open(dir, { ...identity, table: 'another' })).rejects.toThrow(/ledger table/);
    const resharded = await StateStore.open(dir, { ...identity, feedShards: 8 });
    expect(resharded.cursor).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(resharded.get('a')?.version).toBe(1);
    expect(resharded.loadReport?.cursorReset).toBe(true);
    await resharded.close();
  });

  it('a state folder path naming a file, or under one: a bad configuration (78), not an unexpected error (probe agent3)', async () => {
    const file = fresh();
    await writeFile(file, 'not a folder');
    for (const where of [file, join(file, 'state')]) {
      const error = await StateStore.open(where, identity).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AgentConfigError);
      expect((error as Error).message).toContain(`the state folder ${where} cannot be a folder`);
    }
  });

  it('a state folder another user owns or others may write is refused (78), nothing written there; the journal is the agent’s alone (probe localsec)', async () => {
    // Whoever may write the folder may write the agent's journal: a path held at version 999
    // skips every real version of it ("never backwards"), and a lock naming a live pid keeps
    // the agent from starting. A folder left writable (made by hand, or in a shared place) or
    // pre-made by someone else was used as it was.
    const dir = fresh();
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o777);
    const refusal = StateStore.open(dir, identity);
    await expect(refusal).rejects.toBeInstanceOf(AgentConfigError);
    await expect(refusal).rejects.toThrow(
      `the state folder ${dir} is not to be trusted: other users may write it (mode 0777): ` +
        'whoever may write it decides what the agent believes it holds; chmod 700 it if it is yours',
    );
    expect(await readdir(dir)).toEqual([]);
    if (process.getuid?.() === 0) {
      await chmod(dir, 0o700);
      await chown(dir, 65534, 65534);
      await expect(StateStore.open(dir, identity)).rejects.toThrow('it belongs to another user (uid 65534)');
      await chown(dir, 0, 0);
    }
    // Made by hand 0755: others may read its names but write nothing; the journal is 0600 as the snapshot.
    await chmod(dir, 0o755);
    const store = await StateStore.open(dir, identity);
    await store.recordApplied('private/a.jpg', file(1));
    expect((await stat(join(dir, 'state.journal'))).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it('a state folder moved while open (a symlink in its place): closing writes no snapshot and removes no lock there', async () => {
    const dir = fresh();
    const warnings: string[] = [];
    const store = await StateStore.open(dir, identity, { warn: (msg) => warnings.push(msg) });
    await store.recordApplied('x.jpg', file(1));
    const elsewhere = `${dir}-elsewhere`;
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, 'agent.lock'), "another agent's lock");
    await rename(dir, `${dir}.old`);
    await symlink(elsewhere, dir);
    await store.close();
    expect(await readdir(elsewhere)).toEqual(['agent.lock']);
    expect(warnings.some((w) => w.startsWith('the state folder is no longer at its path'))).toBe(true);
    // The journal went through its handle, so the folder that moved has every record.
    await rm(dir);
    await rename(`${dir}.old`, dir);
    const again = await StateStore.open(dir, identity);
    expect(again.get('x.jpg')).toEqual(file(1));
    await again.close();
  });

  it('a state folder removed while open (a cleanup, rsync --delete) is written again at the next flush: lock, snapshot, journal (probe agent3)', async () => {
    const dir = fresh();
    const warnings: string[] = [];
    const store = await StateStore.open(dir, identity, { warn: (msg) => warnings.push(msg) });
    await store.recordApplied('kept.jpg', file(1));
    await rm(dir, { recursive: true });
    await store.recordApplied('after.jpg', file(2));
    await store.flush();
    expect(warnings.some((w) => w.startsWith('the state folder was removed'))).toBe(true);
    // Locked again: another agent on the same folder is refused while this one runs.
    expect(JSON.parse(await readFile(join(dir, 'agent.lock'), 'utf8'))).toMatchObject({ pid: process.pid });
    await store.recordApplied('later.jpg', file(3));
    await store.close();
    const again = await StateStore.open(dir, identity);
    expect([again.get('kept.jpg'), again.get('after.jpg'), again.get('later.jpg')]).toEqual([
      file(1),
      file(2),
      file(3),
    ]);
    await again.close();
  });

  it('one agent per state folder: a live holder of the lock is refused', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity);
    await store.close();
    // pid 1 is always alive.
    await writeFile(join(dir, 'agent.lock'), JSON.stringify({ pid: 1, host: hostname() }));
    await expect(StateStore.open(dir, identity)).rejects.toThrow(/in use by another agent \(pid 1\)/);
    // A lock left by a dead process is taken over.
    await writeFile(join(dir, 'agent.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname() }));
    const again = await StateStore.open(dir, identity);
    await again.close();
  });

  it.runIf(existsSync('/proc/self/stat'))(
    'a lock naming a live process that is not its writer (the pid reused after a reboot) is taken over',
    async () => {
      const dir = fresh();
      const store = await StateStore.open(dir, identity);
      await store.close();
      const other = spawn('sleep', ['30'], { stdio: 'ignore' });
      try {
        await once(other, 'spawn');
        const lockedAt = new Date(Date.now() - 3_600_000).toISOString();
        await writeFile(
          join(dir, 'agent.lock'),
          JSON.stringify({ pid: other.pid, host: hostname(), startedAt: lockedAt }),
        );
        const again = await StateStore.open(dir, identity);
        expect(JSON.parse(await readFile(join(dir, 'agent.lock'), 'utf8'))).toMatchObject({
          pid: process.pid,
        });
        await again.close();
      } finally {
        other.kill();
      }
    },
  );

  it('two agents started at the same moment on one state folder: exactly one takes it, also over a stale lock (probe agent3)', async () => {
    const storeUrl = pathToFileURL(join(repoRoot, 'agent/state-store.ts')).href;
    const script = join(base, 'racer.mts');
    await writeFile(
      script,
      `import { StateStore } from ${JSON.stringify(storeUrl)};
const [dir, at] = process.argv.slice(2);
while (Date.now() < Number(at)) {}
try {
  const store = await StateStore.open(dir, ${JSON.stringify(identity)});
  process.stdout.write('took');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await store.close();
} catch (error) {
  process.stdout.write(String(error.message).includes('in use by another agent') ? 'refused' : String(error));
}
`,
    );
    const loader = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/loader.mjs')).href;
    for (let round = 0; round < 6; round++) {
      const dir = fresh();
      await mkdir(dir);
      // Every other round over a lock left by a process that is gone.
      if (round % 2 === 1)
        await writeFile(join(dir, 'agent.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname() }));
      const at = String(Date.now() + 2500);
      const outcomes = await Promise.all(
        [0, 1].map(async () => {
          const child = spawn(process.execPath, ['--import', loader, script, dir, at], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => {
            out += chunk.toString();
          });
          await once(child, 'exit');
          return out;
        }),
      );
      expect(outcomes.sort(), `round ${round}`).toEqual(['refused', 'took']);
    }
  }, 60_000);

  it('compacts when the journal outgrows the state', async () => {
    const dir = fresh();
    const store = await StateStore.open(dir, identity, { compactAfter: 10 });
    for (let v = 1; v <= 40; v++) await store.recordApplied('same-path', file(v));
    await store.flush();
    const journal = await readFile(join(dir, 'state.journal'), 'utf8');
    expect(journal.split('\n').filter(Boolean).length).toBeLessThanOrEqual(11);
    await store.close();
    expect((await StateStore.open(dir, identity, { readOnly: true })).get('same-path')?.version).toBe(40);
  });

  it('kill -9 at a random moment loses no acknowledged record', async () => {
    const dir = fresh();
    const script = join(base, 'writer.mts');
    const storeUrl = pathToFileURL(join(repoRoot, 'agent/state-store.ts')).href;
    await writeFile(
      script,
      `import { StateStore } from ${JSON.stringify(storeUrl)};
const store = await StateStore.open(${JSON.stringify(dir)}, ${JSON.stringify(identity)}, { compactAfter: 200 });
for (let i = 1; ; i++) {
  await store.recordApplied('p' + (i % 37), { version: i, sha256: null, size: 0, deleted: true });
  if (i % 5 === 0) await store.recordCursor([i, i, i, i]);
  process.stdout.write(i + '\\n');
}
`,
    );
    const child = spawn(
      process.execPath,
      ['--import', pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/loader.mjs')).href, script],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let acknowledged = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      const numbers = chunk.toString().trim().split('\n').map(Number);
      acknowledged = Math.max(acknowledged, ...numbers.filter(Number.isFinite));
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const target = 300 + Math.floor(Math.random() * 300);
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (acknowledged >= target) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        } else if (child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`the writer exited early with ${child.exitCode}`));
        }
      }, 5);
    });
    await exited;
    expect(acknowledged).toBeGreaterThanOrEqual(300);
    const reopened = await StateStore.open(dir, identity);
    // Every version the writer saw acknowledged is there (or a newer one of the same path).
    for (let i = Math.max(1, acknowledged - 36); i <= acknowledged; i++) {
      expect(reopened.get(`p${i % 37}`)?.version ?? 0).toBeGreaterThanOrEqual(i);
    }
    await reopened.close();
  });
});
