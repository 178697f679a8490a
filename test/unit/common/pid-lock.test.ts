import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { transform } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquirePidLock, LockHeldError, takeoverLockFile } from '../../../common/pid-lock.ts';

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

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** Above the kernel's largest pid (2^22): never a live process. */
const NEVER_A_PID = 2 ** 22 + 12345;

/**
 * A contender process: on `go <at> <file>…` it tries each lock at that instant, all at once, and
 * answers `took` or `refused` for each; on `release` it lets go of what it holds and says
 * `released`. One process for every round, and the module compiled once: on a loaded machine six
 * processes each starting tsx took 17 s, longer than every round.
 */
async function startContenders(count: number) {
  const compiled = await transform(await readFile(join(repoRoot, 'common/pid-lock.ts'), 'utf8'), {
    loader: 'ts',
    format: 'esm',
  });
  const lockModule = join(dir, 'pid-lock.mjs');
  await writeFile(lockModule, compiled.code);
  const lockUrl = pathToFileURL(lockModule).href;
  const script = join(dir, 'contender.mjs');
  await writeFile(
    script,
    `import { createInterface } from 'node:readline';
import { acquirePidLock } from ${JSON.stringify(lockUrl)};
let held = [];
process.stdout.write('ready\\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [command, at, ...files] = line.split(' ');
  if (command === 'go') {
    const wait = Number(at) - Date.now() - 20;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    while (Date.now() < Number(at)) {}
    const outcomes = await Promise.all(
      files.map((file) =>
        acquirePidLock(file).then(
          (lock) => (held.push(lock), 'took'),
          (error) => (error.name === 'LockHeldError' ? 'refused' : 'error:' + String(error).replace(/\\s+/g, '_')),
        ),
      ),
    );
    process.stdout.write(outcomes.join(' ') + '\\n');
  } else if (command === 'release') {
    await Promise.all(held.map((lock) => lock.release()));
    held = [];
    process.stdout.write('released\\n');
  }
}
`,
  );
  const contenders = Array.from({ length: count }, () => {
    const child = spawn(process.execPath, [script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    let waiting: ((line: string) => void) | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (waiting === undefined) lines.push(line);
      else {
        const w = waiting;
        waiting = undefined;
        w(line);
      }
    });
    child.on('exit', () => waiting?.('exited'));
    return {
      child,
      send: (line: string) => child.stdin.write(`${line}\n`),
      next: () =>
        new Promise<string>((resolve) => {
          const line = lines.shift();
          if (line !== undefined) resolve(line);
          else if (child.exitCode !== null || child.signalCode !== null) resolve('exited');
          else waiting = resolve;
        }),
    };
  });
  expect(await Promise.all(contenders.map((c) => c.next()))).toEqual(contenders.map(() => 'ready'));
  return contenders;
}

type Contender = Awaited<ReturnType<typeof startContenders>>[number];

/** A stale lock in each of these new folders. */
const staleLocks = (folders: string[]) =>
  Promise.all(
    folders.map(async (folder) => {
      await mkdir(join(dir, folder));
      const file = join(dir, folder, 'race.lock');
      await writeFile(file, JSON.stringify({ pid: NEVER_A_PID, host: hostname(), startedAt: folder }));
      return file;
    }),
  );

/**
 * One batch of rounds, each over a stale lock in a folder of its own, raced at once by every
 * contender: what went wrong in each, if anything.
 */
async function raceBatch(contenders: Contender[], batch: number, size: number): Promise<string[]> {
  const rounds = Array.from({ length: size }, (_, i) => batch * size + i);
  const files = await staleLocks(rounds.map((round) => `race-${round}`));
  // Late enough that every contender has the line, on a loaded machine too.
  const at = Date.now() + 100;
  for (const c of contenders) c.send(`go ${at} ${files.join(' ')}`);
  const answers = (await Promise.all(contenders.map((c) => c.next()))).map((line) => line.split(' '));
  const named = await Promise.all(
    files.map(
      async (file) => (JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as { pid?: number }).pid,
    ),
  );
  for (const c of contenders) c.send('release');
  await Promise.all(contenders.map((c) => c.next()));
  const failures: string[] = [];
  for (const [i, file] of files.entries()) {
    const outcomes = answers.map((a) => a[i]);
    const holder = contenders[outcomes.indexOf('took')]?.child.pid;
    const left = await readdir(join(file, '..'));
    if (
      outcomes.filter((o) => o === 'took').length !== 1 ||
      outcomes.some((o) => o !== 'took' && o !== 'refused') ||
      named[i] !== holder ||
      left.length > 0
    )
      failures.push(`round ${rounds[i]}: ${outcomes.join(', ')}; the lock named ${named[i]}; left ${left}`);
  }
  return failures;
}

/**
 * A batch of rounds in which the first contender is killed a random moment after the start: the
 * others are checked as in raceBatch, and then this process must take each lock. Returns the others.
 */
async function killedBatch(contenders: Contender[], batch: number, failures: string[]): Promise<Contender[]> {
  const files = await staleLocks(Array.from({ length: 8 }, (_, i) => `killed-${batch}-${i}`));
  const at = Date.now() + 100;
  for (const c of contenders) c.send(`go ${at} ${files.join(' ')}`);
  const [victim, ...others] = contenders as [Contender, ...Contender[]];
  setTimeout(() => victim.child.kill('SIGKILL'), at - Date.now() + Math.random() * 30);
  const answers = (await Promise.all(others.map((c) => c.next()))).map((line) => line.split(' '));
  if (victim.child.exitCode === null && victim.child.signalCode === null) await once(victim.child, 'exit');
  for (const c of others) c.send('release');
  await Promise.all(others.map((c) => c.next()));
  for (const [i, file] of files.entries()) {
    const outcomes = answers.map((a) => a[i]);
    if (
      outcomes.filter((o) => o === 'took').length > 1 ||
      outcomes.some((o) => o !== 'took' && o !== 'refused')
    )
      failures.push(`${file}: ${outcomes.join(', ')}`);
    // Whatever the killed one left there (its lock, a takeover lock), it is not in the way.
    await (await acquirePidLock(file)).release();
    const left = (await readdir(join(file, '..'))).filter((name) => /\.takeover-[0-9a-f]{32}$/.test(name));
    if (left.length > 0) failures.push(`${file}: left ${left}`);
  }
  return others;
}

describe('taking over a stale lock: processes racing', () => {
  it('six processes taking over a stale lock at the same instant: exactly one holds it, every round', async () => {
    const contenders = await startContenders(6);
    try {
      const [batches, size] = [16, 8];
      const failures: string[] = [];
      for (let batch = 0; batch < batches; batch++)
        failures.push(...(await raceBatch(contenders, batch, size)));
      expect(failures, `${failures.length} of ${batches * size} rounds`).toEqual([]);
    } finally {
      for (const c of contenders) c.child.kill('SIGKILL');
    }
  }, 60_000);

  it('a contender killed (SIGKILL) at a random moment of the race: no two hold a lock, and the next process takes each', async () => {
    let contenders = await startContenders(5);
    try {
      const failures: string[] = [];
      for (let batch = 0; batch < 6; batch++) {
        const survivors = await killedBatch(contenders, batch, failures);
        contenders = [...survivors, ...(await startContenders(1))];
      }
      expect(failures).toEqual([]);
    } finally {
      for (const c of contenders) c.child.kill('SIGKILL');
    }
  }, 60_000);
});

/** The identity a lock or takeover lock of a process records, as lockContent writes it. */
const identityOf = (pid: number) =>
  JSON.stringify({
    pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    bootId: hasProc ? bootId() : undefined,
    startTicks: hasProc ? startTicks(pid) : undefined,
    nonce: Math.random().toString(16).slice(2),
  });

/** The identity of a process that is then killed with SIGKILL, as in the middle of a takeover. */
async function killedIdentity(): Promise<string> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const identity = identityOf(child.pid as number);
  child.kill('SIGKILL');
  await once(child, 'exit');
  return identity;
}

describe('a takeover interrupted', () => {
  it('takeover locks left by processes killed in the middle of one, one over the other, are cleared: the stale lock is taken over', async () => {
    const folder = await mkdtemp(join(dir, 'killed-'));
    const file = join(folder, 'k.lock');
    const stale = JSON.stringify({ pid: NEVER_A_PID, host: hostname() });
    await writeFile(file, stale);
    // One was killed holding the stale lock's takeover lock; one that came to clear it, holding that one's.
    const first = await killedIdentity();
    await writeFile(takeoverLockFile(file, stale), first);
    await writeFile(takeoverLockFile(file, first), await killedIdentity());
    const lock = await acquirePidLock(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid });
    expect(await readdir(folder)).toEqual(['k.lock']);
    await lock.release();
    expect(await readdir(folder)).toEqual([]);
  });

  it('a takeover lock left after its lock was removed (its holder killed just after the unlink) is cleared by the next holder', async () => {
    const folder = await mkdtemp(join(dir, 'left-'));
    const file = join(folder, 'l.lock');
    await writeFile(takeoverLockFile(file, 'a lock gone since'), await killedIdentity());
    const lock = await acquirePidLock(file);
    expect(await readdir(folder)).toEqual(['l.lock']);
    await lock.release();
  });

  it('a takeover by a live process is waited for, not broken: the lock is taken once it is over', async () => {
    const folder = await mkdtemp(join(dir, 'live-takeover-'));
    const file = join(folder, 'w.lock');
    const stale = JSON.stringify({ pid: NEVER_A_PID, host: hostname() });
    await writeFile(file, stale);
    const takeover = takeoverLockFile(file, stale);
    const live = identityOf(sleeper.pid as number);
    await writeFile(takeover, live);
    let settled = false;
    const acquiring = acquirePidLock(file).finally(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(settled).toBe(false);
    expect(await readFile(takeover, 'utf8')).toBe(live);
    // The live process ends its takeover without taking the lock (it found it changed, say).
    await rm(takeover);
    const lock = await acquiring;
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid });
    await lock.release();
  });
});
