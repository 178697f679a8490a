import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquirePidLock, LockHeldError } from '../../../common/pid-lock.ts';

let dir: string;
let sleeper: ChildProcess;
let deadPid: number;
/** A time after the sleeper started: a lock it could have written. */
let liveSince: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-common-lock-'));
  sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
  await once(sleeper, 'spawn');
  liveSince = new Date(Date.now() + 1000).toISOString();
  const quick = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(quick, 'exit');
  deadPid = quick.pid as number;
});
afterAll(async () => {
  sleeper.kill();
  await rm(dir, { recursive: true, force: true });
});

const lockFile = (name: string) => join(dir, name);
const holderFile = (pid: number, host = hostname(), startedAt = liveSince) =>
  JSON.stringify({ pid, host, startedAt });

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
const startTicks = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
};
const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const hasProc = existsSync('/proc/self/stat');

describe('acquirePidLock', () => {
  it('writes our pid and host, refuses a second lock in this process, and frees it on release', async () => {
    const file = lockFile('a.lock');
    const lock = await acquirePidLock(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    const err = await acquirePidLock(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as Error).message).toMatch(/held by pid \d+ \(this process\)/);
    await lock.release();
    await lock.release();
    await expect(readFile(file)).rejects.toMatchObject({ code: 'ENOENT' });
    await (await acquirePidLock(file)).release();
  });

  it('two concurrent calls in this process: exactly one gets the lock', async () => {
    const file = lockFile('race.lock');
    const results = await Promise.allSettled([acquirePidLock(file), acquirePidLock(file)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    for (const r of results) if (r.status === 'fulfilled') await r.value.release();
  });

  it('refuses a lock held by a live process, naming it, and leaves the file alone', async () => {
    const file = lockFile('live.lock');
    const held = holderFile(sleeper.pid as number);
    await writeFile(file, held);
    const err = await acquirePidLock(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err).toMatchObject({ holder: { pid: sleeper.pid, host: hostname() } });
    expect((err as Error).message).toContain(
      `held by pid ${sleeper.pid} on ${hostname()} since ${liveSince}`,
    );
    expect(await readFile(file, 'utf8')).toBe(held);
  });

  it("throws the caller's own error for a live holder", async () => {
    const file = lockFile('custom.lock');
    await writeFile(file, holderFile(sleeper.pid as number));
    await expect(
      acquirePidLock(file, { inUse: (h) => new Error(`folder in use by another agent (pid ${h.pid})`) }),
    ).rejects.toThrow(`folder in use by another agent (pid ${sleeper.pid})`);
  });

  it.each([
    ['a dead pid', () => holderFile(deadPid)],
    ['our own pid from a previous life (pid reuse)', () => holderFile(process.pid)],
    ['a pid on another host', () => holderFile(sleeper.pid as number, 'elsewhere.example')],
    ['an empty file', () => ''],
    ['a torn file', () => '{"pid": 12'],
    ['a file without a pid', () => '{}'],
  ])('takes over a stale lock: %s', async (_label, content) => {
    const file = lockFile(`stale-${_label.replace(/\W+/g, '-')}.lock`);
    await writeFile(file, content());
    const lock = await acquirePidLock(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid });
    await lock.release();
  });

  // A reboot or a container restart hands the dead holder's pid to another process (/proc only).
  it.runIf(hasProc).each([
    [
      'a live pid that started after the lock was written (an older lock: startedAt only)',
      () => holderFile(sleeper.pid as number, hostname(), new Date(Date.now() - 3_600_000).toISOString()),
    ],
    [
      'a live pid whose start is not the one the lock records',
      () =>
        JSON.stringify({
          pid: sleeper.pid,
          host: hostname(),
          startedAt: liveSince,
          bootId: bootId(),
          startTicks: startTicks(sleeper.pid as number) - 1,
        }),
    ],
    [
      'a lock from another boot',
      () =>
        JSON.stringify({
          pid: sleeper.pid,
          host: hostname(),
          startedAt: liveSince,
          bootId: 'another-boot',
          startTicks: startTicks(sleeper.pid as number),
        }),
    ],
  ])('takes over a stale lock whose pid another process holds now: %s', async (_label, content) => {
    const file = lockFile(`reused-${_label.replace(/\W+/g, '-')}.lock`);
    await writeFile(file, content());
    const lock = await acquirePidLock(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({
      pid: process.pid,
      bootId: bootId(),
      startTicks: startTicks(process.pid),
    });
    await lock.release();
  });

  it.runIf(hasProc)('refuses a lock whose boot and start are those of the live process', async () => {
    const file = lockFile('same-process.lock');
    const held = JSON.stringify({
      pid: sleeper.pid,
      host: hostname(),
      startedAt: liveSince,
      bootId: bootId(),
      startTicks: startTicks(sleeper.pid as number),
    });
    await writeFile(file, held);
    await expect(acquirePidLock(file)).rejects.toBeInstanceOf(LockHeldError);
    expect(await readFile(file, 'utf8')).toBe(held);
  });

  it('the lock file is 0644 whatever the umask: under umask 002 its group could name a live pid in it and keep the owner from starting (probe localsec)', async () => {
    const file = lockFile('umask.lock');
    const before = process.umask(0o002);
    try {
      const lock = await acquirePidLock(file);
      expect((await stat(file)).mode & 0o777).toBe(0o644);
      await lock.release();
    } finally {
      process.umask(before);
    }
  });

  it('release leaves a lock that someone else has taken over since', async () => {
    const file = lockFile('taken.lock');
    const lock = await acquirePidLock(file);
    const other = holderFile(sleeper.pid as number);
    await writeFile(file, other);
    await lock.release();
    expect(await readFile(file, 'utf8')).toBe(other);
  });
});
