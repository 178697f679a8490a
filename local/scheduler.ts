/**
 * The local equivalent of EventBridge schedules: each rule invokes its function with a
 * scheduled event every so many seconds (and, if asked, once right after start).
 *
 * Unlike EventBridge, a run still in progress when the next is due is not overlapped:
 * that tick is skipped (a slow reconcile must not pile up on a laptop).
 */
import { randomUUID } from 'node:crypto';
import type { ScheduledEvent } from 'aws-lambda';
import type { Invocable } from './event-source-mapping.ts';
import { STOP_GRACE_MS, settledWithin } from './stop-grace.ts';

export interface ScheduleSpec {
  /** Rule name, e.g. `lag-monitor-schedule`. */
  readonly name: string;
  readonly fn: Invocable;
  /** Seconds between runs; 0 (or less) runs it only at start, if `atStart`. */
  readonly everySeconds: number;
  /** Run once as soon as the scheduler starts. @default false */
  readonly atStart?: boolean;
}

export interface ScheduleStats {
  runs: number;
  failures: number;
  skipped: number;
  lastError: string | undefined;
  lastResult: unknown;
}

export interface SchedulerOptions {
  readonly region: string;
  /** A run that failed (the function threw or timed out). */
  readonly onError: (error: Error) => void;
  /** How long stop() waits for runs in progress before it lets the stack go on stopping. @default 10000 */
  readonly stopGraceMs?: number;
}

/** An EventBridge scheduled event, as a rule's target receives it. */
export function scheduledEvent(rule: string, region: string, now: Date = new Date()): ScheduledEvent {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: '000000000000',
    time: `${now.toISOString().slice(0, 19)}Z`,
    region,
    resources: [`arn:aws:events:${region}:000000000000:rule/${rule}`],
    detail: {},
  };
}

interface Rule {
  readonly spec: ScheduleSpec;
  readonly stats: ScheduleStats;
  timer: NodeJS.Timeout | undefined;
  running: Promise<unknown> | undefined;
}

export class LocalScheduler {
  private readonly rules = new Map<string, Rule>();
  private started = false;
  private stopped = false;

  constructor(private readonly options: SchedulerOptions) {}

  add(spec: ScheduleSpec): void {
    if (this.rules.has(spec.name)) throw new Error(`schedule ${spec.name} exists already`);
    this.rules.set(spec.name, {
      spec,
      stats: { runs: 0, failures: 0, skipped: 0, lastError: undefined, lastResult: undefined },
      timer: undefined,
      running: undefined,
    });
    if (this.started) this.arm(spec.name);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const name of this.rules.keys()) this.arm(name);
  }

  private arm(name: string): void {
    const rule = this.rules.get(name) as Rule;
    if (rule.spec.atStart) void this.tick(rule);
    if (rule.spec.everySeconds > 0) {
      rule.timer = setInterval(() => void this.tick(rule), rule.spec.everySeconds * 1000);
      rule.timer.unref();
    }
  }

  private async tick(rule: Rule): Promise<void> {
    if (this.stopped) return;
    if (rule.running) {
      rule.stats.skipped++;
      return;
    }
    await this.run(rule.spec.name).catch(() => undefined);
  }

  /**
   * Invokes a rule's function now with a scheduled event (or `event`), waiting for a run in
   * progress first; resolves with the function's result, rejects with its error.
   */
  async run(name: string, event?: unknown): Promise<unknown> {
    const rule = this.rules.get(name);
    if (!rule) throw new Error(`no schedule ${name}`);
    if (this.stopped) throw new Error('the scheduler is stopped');
    while (rule.running) await rule.running.catch(() => undefined);
    const invocation = rule.spec.fn.invoke(event ?? scheduledEvent(name, this.options.region));
    rule.running = invocation;
    try {
      const result = await invocation;
      rule.stats.runs++;
      rule.stats.lastResult = result;
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      rule.stats.runs++;
      rule.stats.failures++;
      rule.stats.lastError = error.message;
      this.options.onError(new Error(`schedule ${name}: ${error.message}`, { cause: error }));
      throw error;
    } finally {
      rule.running = undefined;
    }
  }

  stats(): Record<string, ScheduleStats> {
    return Object.fromEntries([...this.rules].map(([name, r]) => [name, { ...r.stats }]));
  }

  /**
   * No more runs; waits for the ones in progress, up to the grace: a scheduled function is cut off
   * after it (its worker ends with the functions), as Lambda may cut one off, and picks up from its
   * checkpoint on the next start.
   */
  async stop(graceMs: number = this.options.stopGraceMs ?? STOP_GRACE_MS): Promise<void> {
    this.stopped = true;
    for (const rule of this.rules.values()) clearInterval(rule.timer);
    await settledWithin(
      [...this.rules.values()].map((r) => r.running),
      graceMs,
    );
  }
}
