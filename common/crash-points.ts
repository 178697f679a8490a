/**
 * Named crash points: places in production code where a test or the chaos run (docs/chaos.md)
 * makes the process die, to prove that redelivery, reconcile and the agent's restart repair
 * whatever was half done. Off unless `MIRROR_CRASH_POINTS` names them, read once at load:
 * a point that is off costs one comparison.
 *
 *   MIRROR_CRASH_POINTS="commit.before-fanout=0.3,replicate.mid-copy=0.1"   (rates 0-1)
 *   MIRROR_CRASH_POINTS="*=0.2"                                            (every point)
 *
 * With `MIRROR_CRASH_POINTS_OFF_FILE=<path>` set too, the points fall silent once that file
 * exists: a run ends its faults without restarting the processes that carry them.
 *
 * A crash in a Lambda (or a local function's worker thread) ends the process (the thread
 * locally), as a dying execution environment does: the invocation fails whole, its SQS batch
 * comes back after the visibility timeout. Elsewhere (an agent inside the local stack, a unit
 * test) it throws CrashPointError, which the caller treats as any unexpected failure, unless
 * `MIRROR_CRASH_POINTS_EXIT=1` says the process is there to die (an agent run as its own process
 * by the chaos run, restarted by its supervisor).
 */
import { existsSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

export const CRASH_POINTS = [
  /** Ingest: the version is committed (ledger written), its messages to the targets not sent. */
  'commit.before-fanout',
  /** Replicate: the copy to the target is under way (it may or may not complete). */
  'replicate.mid-copy',
  /** Replicate: the copy is done, the target's ledger row not written. */
  'replicate.before-target-row',
  /** Agent: part of the file is in its temp file. */
  'agent.mid-download',
  /** Agent: the temp file is complete and synced, not yet renamed over the final name. */
  'agent.before-rename',
  /** Agent: a record is in the state journal, the snapshot that folds it in is not written. */
  'agent.before-snapshot',
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];

export const CRASH_POINTS_ENV = 'MIRROR_CRASH_POINTS';
export const CRASH_POINTS_OFF_FILE_ENV = 'MIRROR_CRASH_POINTS_OFF_FILE';
export const CRASH_POINTS_EXIT_ENV = 'MIRROR_CRASH_POINTS_EXIT';

/** The line a crash writes on stderr before it happens (the chaos run counts them). */
export const CRASH_LOG_PREFIX = 'mirror-crash-point ';

export class CrashPointError extends Error {
  constructor(readonly point: CrashPointName) {
    super(`crash point ${point} fired (${CRASH_POINTS_ENV})`);
    this.name = 'CrashPointError';
  }
}

/** Parses `name=rate,...`; a wrong name or rate is an error, so a typo never silently tests nothing. */
export function parseCrashPoints(spec: string | undefined): ReadonlyMap<CrashPointName, number> | undefined {
  if (spec === undefined || spec.trim() === '') return undefined;
  const rates = new Map<CrashPointName, number>();
  for (const item of spec.split(',')) {
    const [rawName = '', rawRate = '', ...rest] = item.split('=').map((s) => s.trim());
    const rate = Number(rawRate);
    if (rest.length > 0 || rawRate === '' || !Number.isFinite(rate) || rate < 0 || rate > 1)
      throw new Error(`${CRASH_POINTS_ENV}: "${item}" is not <point>=<rate 0-1>`);
    if (rawName === '*') {
      for (const name of CRASH_POINTS) rates.set(name, rate);
    } else if ((CRASH_POINTS as readonly string[]).includes(rawName)) {
      rates.set(rawName as CrashPointName, rate);
    } else {
      throw new Error(
        `${CRASH_POINTS_ENV}: unknown crash point "${rawName}" (known: ${CRASH_POINTS.join(', ')})`,
      );
    }
  }
  return rates;
}

const configured = Object.freeze(parseCrashPoints(globalThis.process?.env?.[CRASH_POINTS_ENV]));
const offFile = globalThis.process?.env?.[CRASH_POINTS_OFF_FILE_ENV];
const fired = new Map<CrashPointName, number>();

/** How often each point fired in this process (or thread), for a run's report. */
export function crashesFired(): ReadonlyMap<CrashPointName, number> {
  return fired;
}

/** Whether the point fires now (only asked when crash points are configured). */
function fires(point: CrashPointName): boolean {
  const rate = configured?.get(point);
  if (rate === undefined || Math.random() >= rate) return false;
  return offFile === undefined || !existsSync(offFile);
}

/** Whether this process runs like a Lambda execution environment (it may die). */
const dies =
  !isMainThread ||
  globalThis.process?.env?.AWS_LAMBDA_FUNCTION_NAME !== undefined ||
  globalThis.process?.env?.[CRASH_POINTS_EXIT_ENV] === '1';

/** Crashes here at the point's configured rate; does nothing when crash points are off. */
export function crashPoint(point: CrashPointName): void {
  if (configured === undefined) return;
  if (fires(point)) crash(point);
}

/**
 * Crashes while `work` is in flight (at the point's rate): the work goes on or not, nobody waits
 * for it. Returns `work` untouched when the point is off.
 */
export function crashDuring<T>(point: CrashPointName, work: Promise<T>): Promise<T> {
  if (configured === undefined || !fires(point)) return work;
  work.catch(() => undefined);
  return new Promise<T>((_resolve, reject) => {
    setTimeout(() => {
      try {
        crash(point);
      } catch (error) {
        reject(error);
      }
    }, Math.random() * 20);
  });
}

function crash(point: CrashPointName): never {
  fired.set(point, (fired.get(point) ?? 0) + 1);
  process.stderr.write(`${CRASH_LOG_PREFIX}${JSON.stringify({ point, pid: process.pid })}\n`);
  if (dies) process.exit(137);
  throw new CrashPointError(point);
}
