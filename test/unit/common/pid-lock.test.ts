import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquirePidLock, LockHeldError } from '../../../common/pid-lock.ts';

let dir: string;
let sleeper: ChildProcess;
let deadPid: number;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-common-lock-'));
  sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
  const quick = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(quick, 'exit');
  deadPid = quick.pid as number;
});
afterAll(async () => {
  sleeper.kill();
  await rm(dir, { recursive: true, force: true });
});

const lockFile = (name: string) => join(dir, name);
const holderFile = (pid: number, host = hostname()) =>
  JSON.stringify({ pid, host, startedAt: '2026-01-01T00:00:00.000Z' });

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
    expect((err as Error).message).toContain(`held by pid ${sleeper.pid} on ${hostname()} since 2026-01-01`);
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

  it('release leaves a lock that someone else has taken over since', async () => {
    const file = lockFile('taken.lock');
    const lock = await acquirePidLock(file);
    const other = holderFile(sleeper.pid as number);
    await writeFile(file, other);
    await lock.release();
    expect(await readFile(file, 'utf8')).toBe(other);
  });
});
