/**
 * The one pid lock: a file naming the process (pid, host, start time) that owns a folder.
 * A second owner, in another process or in this one, is refused with an error naming the
 * holder; a lock left by a process that died (kill -9, crash, power loss) is taken over, and so
 * is one whose pid another process holds now (a reboot or a container restart handed it on).
 *
 * Every file this module makes is made whole by a link of a private temp file (no reader sees it
 * torn, and the link fails if the name is taken) and never written in place; every text it writes
 * carries a random nonce, so a text removed from a file never comes back to it.
 *
 * Taking over is where two processes could both end up holding the lock: one that read the stale
 * text, and then unlinked, could remove the lock another had just made in its place (the check and
 * the unlink are two steps). So a text is removed from a file only by the holder of that text's
 * takeover lock, `<lock>.takeover-<sha256 of the text>`, made by the same exclusive link, and only
 * after reading, while it holds it, that the file still holds that text:
 *
 * 1. Create the lock; if it exists and a live process wrote it, refuse, naming it.
 * 2. Else (its text t is stale) create t's takeover lock, holding our identity. If that worked, read
 *    the lock again: still t, unlink it; then remove the takeover lock and go back to 1.
 * 3. If t's takeover lock exists and a live process holds it, wait a little and go back to 1 (it is
 *    taking over; then it holds the lock and we are refused, or it dies and we go on). If its holder
 *    is dead (killed in the middle of a takeover), remove its text from it by step 2 one level down:
 *    under the takeover lock of that text. Then go back to 1.
 *
 * Why this holds: while P holds t's takeover lock, no one else does, since P's text in it is removed
 * only by P or by the holder of P's own takeover lock, which needs P dead. So between P's reading t
 * and P's unlink nothing else removes t (its writer is dead too), and the file, never written in
 * place, still holds t: P removes the stale text, never a fresh lock. A live holder's lock is thus
 * never removed by another, and the exclusive link lets one process at a time make it. A takeover
 * lock's name is about one text only, so a slow process that wins it after t is gone finds t gone
 * and does nothing (the ABA that a single `<lock>.takeover` name would have one level down, where
 * clearing a dead contender's takeover lock could remove a live one's). It ends: each step makes a
 * lock, meets a live holder, removes a stale text, or waits for a takeover a few file operations
 * long; a chain of takeover locks grows only with processes killed in the middle of one. A takeover
 * lock left by one killed after its unlink names a text gone for good: the next holder of the lock
 * clears such leftovers the same way. docs/design-notes.md, "The pid lock".
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

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
/** The texts of the takeover locks this process holds now: one naming our pid and not listed is a previous life's. */
const takeoversHere = new Set<string>();

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
    // Two locks taken in one millisecond by one process would otherwise read the same: a text
    // removed as stale must never come back (the module comment).
    nonce: randomBytes(8).toString('hex'),
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

/** The takeover lock for the text `text` read at `lockPath` or at one of its takeover locks. */
export function takeoverLockFile(lockPath: string, text: string): string {
  return `${lockPath}.takeover-${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

/** How long a live process may take to finish a takeover (a few file operations) before we give up. */
const TAKEOVER_PATIENCE_MS = 10_000;

const takingOver = (found: { text: string; holder: LockHolder | undefined }) =>
  found.holder !== undefined &&
  (found.holder.pid === process.pid ? takeoversHere.has(found.text) : mayBeRunning(found.holder));

const unlinkIfThere = (file: string) =>
  unlink(file).catch((err: unknown) => {
    if (errno(err) !== 'ENOENT') throw err;
  });

/**
 * Removes the stale `text` from `file` (the lock, or a takeover lock a dead process left) under the
 * takeover lock of that text. Returns the holder of a takeover in progress, else undefined: the text
 * is gone, by our hand or another's, and the caller looks again.
 */
async function removeStale(lockPath: string, file: string, text: string): Promise<LockHolder | undefined> {
  const takeover = takeoverLockFile(lockPath, text);
  const mine = lockContent();
  takeoversHere.add(mine);
  try {
    if (await createExclusive(takeover, mine)) {
      try {
        if ((await readHolder(file))?.text === text) await unlinkIfThere(file);
      } finally {
        if ((await readHolder(takeover))?.text === mine) await unlinkIfThere(takeover);
      }
      return undefined;
    }
  } finally {
    takeoversHere.delete(mine);
  }
  const other = await readHolder(takeover);
  if (other === undefined) return undefined;
  if (takingOver(other)) return other.holder;
  // Its holder died in the middle: its text is stale in turn, removed the same way.
  return removeStale(lockPath, takeover, other.text);
}

/** Takeover locks left by processes killed in the middle of one; run by the lock's holder. */
async function clearLeftTakeovers(lockPath: string): Promise<void> {
  const prefix = `${basename(lockPath)}.takeover-`;
  const names = await readdir(dirname(lockPath)).catch(() => [] as string[]);
  for (const name of names) {
    // Not their temp files (`….<pid>-<hex>`), which may be half written.
    if (!name.startsWith(prefix) || !/^[0-9a-f]{32}$/.test(name.slice(prefix.length))) continue;
    const file = join(dirname(lockPath), name);
    const found = await readHolder(file).catch(() => undefined);
    if (found !== undefined && !takingOver(found))
      await removeStale(lockPath, file, found.text).catch(() => undefined);
  }
}

/**
 * Creates the lock, or takes over a stale one by the protocol in the module comment; a live holder
 * ends it. Exported for a lock a process may take again while it holds it (the agent's state
 * folder, reopened by its own process): acquirePidLock refuses that.
 */
export async function createOrTakeOver(path: string, content: string, inUse: (holder: LockHolder) => Error) {
  const giveUpAt = Date.now() + TAKEOVER_PATIENCE_MS;
  let busy: LockHolder | undefined;
  for (let waits = 0; !(await createExclusive(path, content)); ) {
    if (Date.now() > giveUpAt)
      throw new Error(
        `could not take over the stale lock ${path} in ${TAKEOVER_PATIENCE_MS / 1000} s: ` +
          (busy === undefined ? 'it keeps changing' : `pid ${busy.pid} is taking it over`),
      );
    const found = await readHolder(path);
    if (found === undefined) continue; // released meanwhile
    if (found.holder !== undefined && mayBeRunning(found.holder)) throw inUse(found.holder);
    busy = await removeStale(path, path, found.text);
    // Random, so that waiting contenders do not come back in step; short, as a takeover is.
    if (busy !== undefined)
      await new Promise((done) => setTimeout(done, Math.random() * Math.min(100, 5 * 2 ** waits++)));
  }
  await clearLeftTakeovers(path);
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
