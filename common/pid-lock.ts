/**
 * The one pid lock: a file naming the process (pid, host, start time) that owns a folder.
 * A second owner, in another process or in this one, is refused with an error naming the
 * holder; a lock left by a process that died (kill -9, crash, power loss) is taken over, and so
 * is one whose pid another process holds now (a reboot or a container restart handed it on).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

export interface LockHolder {
  readonly pid: number;
  readonly host?: string | undefined;
  readonly startedAt?: string | undefined;
  /** The kernel's boot id when the lock was taken (Linux). */
  readonly bootId?: string | undefined;
  /** The holder's start, in clock ticks since boot (`/proc/<pid>/stat`, Linux). */
  readonly startTicks?: number | undefined;
}

/** The lock is held by a live process (`holder`). */
export class LockHeldError extends Error {
  override readonly name = 'LockHeldError';
  constructor(
    readonly file: string,
    readonly holder: LockHolder,
  ) {
    super(
      `${file} is held by pid ${holder.pid}${holder.pid === process.pid ? ' (this process)' : ''}` +
        `${holder.host === undefined ? '' : ` on ${holder.host}`}` +
        `${holder.startedAt === undefined ? '' : ` since ${holder.startedAt}`}`,
    );
  }
}

export interface PidLock {
  readonly file: string;
  /** Removes the lock file if it is still ours; a second call does nothing. */
  release(): Promise<void>;
}

export interface PidLockOptions {
  /** The error thrown when a live process holds the lock. @default LockHeldError */
  readonly inUse?: (holder: LockHolder) => Error;
}

/** Files locked by this process: a second lock here on the same file must fail too. */
const heldHere = new Set<string>();

/** A process with this pid runs on this machine (any user's). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The holder a lock file's JSON names, or undefined without a pid. */
export function parseHolder(parsed: unknown): LockHolder | undefined {
  const p = (parsed ?? {}) as Record<string, unknown>;
  if (typeof p.pid !== 'number') return undefined;
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return {
    pid: p.pid,
    host: text(p.host),
    startedAt: text(p.startedAt),
    bootId: text(p.bootId),
    startTicks: typeof p.startTicks === 'number' ? p.startTicks : undefined,
  };
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

export async function readHolder(
  file: string,
): Promise<{ text: string; holder: LockHolder | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const holder = parseHolder(JSON.parse(text));
    return { text, holder };
  } catch {
    return { text, holder: undefined };
  }
}

/** This boot's id, or undefined without /proc. */
function currentBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** /proc reports start times in USER_HZ ticks, 100 a second on Linux whatever the kernel's own rate. */
const TICKS_PER_SECOND = 100;
/** The boot time /proc gives is whole seconds, and NTP moves it a little: slack for an old lock. */
const START_SLACK_MS = 5000;

/** When `pid` started, in ms since the epoch, from /proc (undefined without it). */
function processStartMs(ticks: number): number | undefined {
  try {
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    return Number.isFinite(btime) ? btime * 1000 + (ticks * 1000) / TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the live process with the holder's pid is the holder. A lock records the boot and the
 * start of its process; one without them (an older agent's) only `startedAt`, and a process that
 * started after the lock was written is not its writer. Without /proc, any live pid counts.
 */
function isHolderProcess(holder: LockHolder): boolean {
  const bootId = currentBootId();
  if (holder.bootId !== undefined && bootId !== undefined && holder.bootId !== bootId) return false;
  const ticks = processStartTicks(holder.pid);
  if (ticks === undefined) return true;
  if (holder.startTicks !== undefined) return holder.startTicks === ticks;
  const lockedAt = holder.startedAt === undefined ? Number.NaN : Date.parse(holder.startedAt);
  const startedMs = processStartMs(ticks);
  return Number.isNaN(lockedAt) || startedMs === undefined || startedMs <= lockedAt + START_SLACK_MS;
}

/**
 * Whether the holder may still be running. Our own pid in the file is a previous life of
 * a recycled pid (containers restart as pid 1), since this process's own locks are in
 * `heldHere`; a pid on another host cannot be checked from here, and the lock guards
 * against two processes on one machine.
 */
export const mayBeRunning = (holder: LockHolder): boolean =>
  holder.pid !== process.pid &&
  (holder.host === undefined || holder.host === hostname()) &&
  isAlive(holder.pid) &&
  isHolderProcess(holder);

/** What a lock file says of this process. */
export function lockContent(): string {
  return JSON.stringify({
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    bootId: currentBootId(),
    startTicks: processStartTicks(process.pid),
  });
}

/** Creates `file` with `content` in one step: no reader ever sees it empty or torn. */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const temp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  // Readable by all (who holds it is no secret) but written by its owner alone: under umask 002 the
  // group could put a live pid in it, and the agent or the local stack would not start again.
  await writeFile(temp, content, { flag: 'wx', mode: 0o644 });
  try {
    await link(temp, file);
    return true;
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/**
 * Each round either creates the file or removes a stale one; a live holder ends it. Exported for a
 * lock a process may take again while it holds it (the agent's state folder, reopened by its own
 * process): acquirePidLock refuses that.
 */
export async function createOrTakeOver(path: string, content: string, inUse: (holder: LockHolder) => Error) {
  for (let round = 0; !(await createExclusive(path, content)); round++) {
    const found = await readHolder(path);
    if (found === undefined) continue; // released meanwhile
    if (found.holder !== undefined && mayBeRunning(found.holder)) throw inUse(found.holder);
    if (round >= 3) throw new Error(`could not take over the stale lock ${path}: it keeps changing`);
    // Removed only if it is still the stale lock read above: another process taking it over
    // at the same moment has written its own, which must stay.
    const again = await readHolder(path);
    if (again?.text === found.text) await unlink(path).catch(() => undefined);
  }
}

/** Takes the lock at `file` (its folder must exist); throws if a live process holds it. */
export async function acquirePidLock(file: string, options: PidLockOptions = {}): Promise<PidLock> {
  const path = resolve(file);
  const inUse = options.inUse ?? ((holder: LockHolder) => new LockHeldError(path, holder));
  if (heldHere.has(path)) throw inUse({ pid: process.pid, host: hostname() });
  // Claimed before the first await, so that two calls in this process cannot both proceed.
  heldHere.add(path);
  const content = lockContent();
  try {
    await createOrTakeOver(path, content, inUse);
  } catch (err) {
    heldHere.delete(path);
    throw err;
  }
  let released = false;
  return {
    file: path,
    async release() {
      if (released) return;
      released = true;
      heldHere.delete(path);
      if ((await readHolder(path))?.text === content) await unlink(path).catch(() => undefined);
    },
  };
}
