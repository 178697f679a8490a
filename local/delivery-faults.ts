/**
 * Delivery faults for the local stack (docs/chaos.md): what S3 notifications and SQS
 * deliveries do on a bad day, at chosen rates. S3 notifications are at-least-once with loss
 * possible; SQS delivers at least once, and an outage loses what was in flight. The S3
 * notifier and the event-source mappings ask a `DeliveryFaults` what to do with each
 * delivery; with no rates set they deliver everything once, in order, at once.
 */
import type { QueueMessage, QueuePort } from '../agent/ports.ts';
import type { RunningEmulator } from './emulators.ts';

export interface DeliveryFaultRates {
  /** Share of deliveries lost (0-1). */
  readonly drop?: number;
  /** Share of deliveries made twice. */
  readonly duplicate?: number;
  /** Share of deliveries made late (by up to `maxDelayMs`). */
  readonly delay?: number;
  /** Share of deliveries held back until after the next one. */
  readonly reorder?: number;
  /** @default 2000 */
  readonly maxDelayMs?: number;
  /** Only deliveries to these (function names); others go through untouched. @default every one */
  readonly only?: readonly string[];
}

export type DeliveryFate = 'deliver' | 'drop' | 'duplicate' | 'delay' | 'reorder';

export type FaultCounts = Record<DeliveryFate, number>;

const FATES = ['drop', 'duplicate', 'delay', 'reorder'] as const;

/** Rates checked once, at start: a wrong one is an error, not a quieter run. */
export function checkRates(rates: DeliveryFaultRates, what: string): DeliveryFaultRates {
  let sum = 0;
  for (const fate of FATES) {
    const r = rates[fate] ?? 0;
    if (!Number.isFinite(r) || r < 0 || r > 1) throw new Error(`${what}.${fate}: ${r} is not a rate 0-1`);
    sum += r;
  }
  if (sum > 1) throw new Error(`${what}: drop + duplicate + delay + reorder = ${sum}, more than 1`);
  const maxDelayMs = rates.maxDelayMs ?? 2000;
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0)
    throw new Error(`${what}.maxDelayMs: ${maxDelayMs} is not a number of milliseconds`);
  return rates;
}

/** Decides each delivery's fate; `set` changes the rates while running, `set({})` stops the faults. */
export class DeliveryFaults {
  readonly counts: FaultCounts = { deliver: 0, drop: 0, duplicate: 0, delay: 0, reorder: 0 };
  private rates: DeliveryFaultRates;

  constructor(
    readonly name: string,
    rates: DeliveryFaultRates = {},
    private readonly random: () => number = Math.random,
  ) {
    this.rates = checkRates(rates, name);
  }

  set(rates: DeliveryFaultRates): void {
    this.rates = checkRates(rates, this.name);
  }

  get active(): boolean {
    return FATES.some((f) => (this.rates[f] ?? 0) > 0);
  }

  /** The fate of one delivery (to `subject`, a function name). */
  fate(subject?: string): DeliveryFate {
    let fate: DeliveryFate = 'deliver';
    const only = this.rates.only;
    if (this.active && (only === undefined || (subject !== undefined && only.includes(subject)))) {
      let x = this.random();
      for (const f of FATES) {
        const r = this.rates[f] ?? 0;
        if (x < r) {
          fate = f;
          break;
        }
        x -= r;
      }
    }
    this.counts[fate]++;
    return fate;
  }

  delayMs(): number {
    return Math.round(this.random() * (this.rates.maxDelayMs ?? 2000));
  }
}

/**
 * A pull target's queue as its agent sees it, with delivery faults (the agent polls its queue
 * itself: no event-source mapping stands between them). Each message received gets a fate:
 * `drop` deletes it unseen, `duplicate` hands it over now and again at the next receive,
 * `delay` holds it back up to `maxDelayMs`, `reorder` holds it until after the next batch. A
 * message held back stays in flight meanwhile, as with the mappings.
 */
export function faultyQueue(inner: QueuePort, faults: DeliveryFaults, subject: string): QueuePort {
  return new FaultyQueue(inner, faults, subject);
}

class FaultyQueue implements QueuePort {
  private later: { message: QueueMessage; dueAt: number }[] = [];
  private afterNext: QueueMessage[] = [];

  constructor(
    private readonly inner: QueuePort,
    private readonly faults: DeliveryFaults,
    private readonly subject: string,
  ) {}

  async receive(options: Parameters<QueuePort['receive']>[0]): Promise<QueueMessage[]> {
    const received = await this.inner.receive(options);
    const now = Date.now();
    const out = this.takeDue(now);
    const heldBefore = this.afterNext;
    this.afterNext = [];
    for (const message of received) await this.decide(message, now, out);
    // Held back until a later batch: they come after it (or alone once nothing else comes).
    if (out.length > 0 || received.length === 0) out.push(...heldBefore);
    else this.afterNext.unshift(...heldBefore);
    return out;
  }

  private takeDue(now: number): QueueMessage[] {
    const due = this.later.filter((h) => h.dueAt <= now).map((h) => h.message);
    this.later = this.later.filter((h) => h.dueAt > now);
    return due;
  }

  private async decide(message: QueueMessage, now: number, out: QueueMessage[]): Promise<void> {
    const fate = this.faults.fate(this.subject);
    if (fate === 'drop') await this.inner.delete(message.receiptHandle).catch(() => undefined);
    else if (fate === 'delay') this.later.push({ message, dueAt: now + this.faults.delayMs() });
    else if (fate === 'reorder') this.afterNext.push(message);
    else {
      out.push(message);
      if (fate === 'duplicate') this.later.push({ message, dueAt: now });
    }
  }

  delete(receiptHandle: string): Promise<void> {
    return this.inner.delete(receiptHandle);
  }

  setVisibility(entries: readonly { receiptHandle: string; seconds: number }[]): Promise<void> {
    return this.inner.setVisibility(entries);
  }

  backlog(): Promise<number | undefined> {
    return this.inner.backlog();
  }
}

/**
 * An emulator that can be stopped and started again on the same port (the SQS outage of a
 * chaos run): whatever it held in memory is gone.
 */
export interface RestartableEmulator extends RunningEmulator {
  /**
   * Stops the emulator and starts it again on its port, then runs `afterStart` (the queues created
   * again). Restarts run one at a time, each with its `afterStart`.
   */
  restart(afterStart?: () => Promise<unknown>): Promise<void>;
  readonly restarts: number;
}

export async function restartable(
  start: (port: number | undefined) => Promise<RunningEmulator>,
): Promise<RestartableEmulator> {
  let current = await start(undefined);
  const port = current.port;
  let restarts = 0;
  let restarting: Promise<void> = Promise.resolve();
  return {
    port,
    endpoint: current.endpoint,
    get restarts() {
      return restarts;
    },
    // One restart at a time: a chaos run restarts from several workload lanes. A second restart
    // begun while the first was starting stopped the old emulator again and then found the port
    // held by the new one; begun while the first re-created its queues, it wiped them under it.
    restart(afterStart) {
      restarting = restarting
        .catch(() => undefined)
        .then(async () => {
          await current.stop();
          current = await start(port);
          restarts++;
          await afterStart?.();
        });
      return restarting;
    },
    stop: async () => {
      await restarting.catch(() => undefined);
      await current.stop();
    },
  };
}
