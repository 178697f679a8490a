/**
 * "One clear log line each": a condition (disk full, network down, ...) is logged
 * once when it starts, with what to do, and once when it clears, with how long it
 * lasted; the retries in between are silent. While a condition holds, the queue
 * consumer stops taking new messages (it would only burn their receive counts and
 * push them to the DLQ) and keeps extending the ones it holds.
 */
import { CONDITION_TEXT, type ConditionKind, LOCAL_CONDITIONS, REMOTE_CONDITIONS } from './errors.ts';
import type { AgentLog } from './log.ts';
import { errorMessage } from './util.ts';

export class Conditions {
  /** Each holding condition: since when, its silent retries, and who still meets it (local ones). */
  private readonly active = new Map<
    ConditionKind,
    { since: number; retries: number; holders: Set<string> }
  >();

  constructor(
    private readonly log: AgentLog,
    // Time passed: a wall clock stepped by NTP logged a moment's outage as hours (or negative).
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Marks a condition as holding; logs only if it was not already. `holder` names who met it
   * (the path being written, 'start'); without one, anyone's next success closes it.
   */
  raise(kind: ConditionKind, error: unknown, fields: Record<string, unknown> = {}, holder = ANYONE): void {
    const current = this.active.get(kind);
    if (current) {
      current.retries++;
      current.holders.add(holder);
      return;
    }
    this.active.set(kind, { since: this.now(), retries: 0, holders: new Set([holder]) });
    this.log.log(kind === 'throttled' ? 'warn' : 'error', CONDITION_TEXT[kind], {
      condition: kind,
      error: errorMessage(error),
      ...fields,
    });
  }

  /**
   * A local write by `holder` succeeded. A local condition (disk full, permission denied) is
   * over once every write that met it has succeeded: one small file written while a large one
   * still finds the disk full is not a recovery (and would let the queue consumer take more).
   */
  clearLocal(holder = ANYONE): void {
    for (const kind of LOCAL_CONDITIONS) {
      const current = this.active.get(kind);
      if (!current) continue;
      current.holders.delete(holder);
      current.holders.delete(ANYONE);
      if (current.holders.size === 0) this.recovered(kind);
    }
  }

  /**
   * `holder` stopped meeting local conditions without a write (it settled otherwise, gave up,
   * or the agent is stopping): it holds none open; the next local success closes them.
   */
  abandon(holder: string): void {
    for (const kind of LOCAL_CONDITIONS) {
      const holders = this.active.get(kind)?.holders;
      if (!holders?.delete(holder)) continue;
      if (holders.size === 0) holders.add(ANYONE);
    }
  }

  /** An AWS call succeeded: the network, the credentials and the throttling are fine again. */
  clearRemote(): void {
    for (const kind of REMOTE_CONDITIONS) if (this.active.has(kind)) this.recovered(kind);
  }

  private recovered(kind: ConditionKind): void {
    const current = this.active.get(kind);
    if (!current) return;
    this.active.delete(kind);
    this.log.log('info', `recovered: ${kind}`, {
      condition: kind,
      seconds: Math.round((this.now() - current.since) / 100) / 10,
      retries: current.retries,
    });
  }

  get any(): boolean {
    return this.active.size > 0;
  }

  list(): ConditionKind[] {
    return [...this.active.keys()];
  }
}

/** The holder anyone's success stands for: a condition raised without a name, or abandoned. */
const ANYONE = '';
