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
  private readonly active = new Map<ConditionKind, { since: number; retries: number }>();

  constructor(
    private readonly log: AgentLog,
    private readonly now: () => number = Date.now,
  ) {}

  /** Marks a condition as holding; logs only if it was not already. */
  raise(kind: ConditionKind, error: unknown, fields: Record<string, unknown> = {}): void {
    const current = this.active.get(kind);
    if (current) {
      current.retries++;
      return;
    }
    this.active.set(kind, { since: this.now(), retries: 0 });
    this.log.log(kind === 'throttled' ? 'warn' : 'error', CONDITION_TEXT[kind], {
      condition: kind,
      error: errorMessage(error),
      ...fields,
    });
  }

  clear(kind: ConditionKind): void {
    const current = this.active.get(kind);
    if (!current) return;
    this.active.delete(kind);
    this.log.log('info', `recovered: ${kind}`, {
      condition: kind,
      seconds: Math.round((this.now() - current.since) / 100) / 10,
      retries: current.retries,
    });
  }

  /** A local write succeeded: local conditions are over. */
  clearLocal(): void {
    for (const kind of LOCAL_CONDITIONS) this.clear(kind);
  }

  /** An AWS call succeeded: remote conditions are over. */
  clearRemote(): void {
    for (const kind of REMOTE_CONDITIONS) this.clear(kind);
  }

  get any(): boolean {
    return this.active.size > 0;
  }

  list(): ConditionKind[] {
    return [...this.active.keys()];
  }
}
