/**
 * The target's FIFO queue: long-poll, apply, delete.
 *
 * - Messages of one group (one path) are applied one after another in arrival
 *   order, across batches too; different groups run in parallel, up to the
 *   shared `--concurrency` of downloads.
 * - A message is deleted only once its version is applied (or found already
 *   applied, or not this target's). A refused or failed one is released with a
 *   visibility timeout that grows with its receive count, so the queue redelivers
 *   it with backoff and, after its maxReceiveCount, moves it to the DLQ (visible).
 * - Every held message's visibility is extended while it waits or downloads.
 * - While a condition holds (disk full, network down), no new message is taken:
 *   held ones are retried in place, so an outage does not burn receive counts.
 */

import { pause } from '../common/retry.ts';
import { replicationMessageSchema } from '../contracts/replication-message.ts';
import type { ApplyOutcome, VersionInfo } from './applier.ts';
import type { Conditions } from './conditions.ts';
import { classifyCondition } from './errors.ts';
import type { AgentLog } from './log.ts';
import type { QueueMessage, QueuePort } from './ports.ts';
import { backoffMs, errorMessage, wakeableWait } from './util.ts';

export type WorkOutcome = ApplyOutcome | { kind: 'failed'; error: unknown } | { kind: 'aborted' };

export interface QueueConsumerDeps {
  readonly queue: QueuePort;
  readonly targetId: string;
  readonly concurrency: number;
  readonly visibilityTimeoutSeconds: number;
  readonly waitTimeSeconds: number;
  readonly conditions: Conditions;
  readonly log: AgentLog;
  /** Applies with retries; resolves with the final outcome. */
  readonly work: (v: VersionInfo, signal: AbortSignal) => Promise<WorkOutcome>;
  /** The version held locally for a path (gap detection). */
  readonly heldVersion: (path: string) => number;
  /** A message skipped ahead of the local state: the feed may have more. */
  readonly onGap: (path: string, held: number, arrived: number) => void;
  readonly onRefused: (code: string, reason: string, fields: Record<string, unknown>) => void;
}

interface Held {
  readonly message: QueueMessage;
  readonly committedAt: number | undefined;
  releasedAt?: number;
}

export class QueueConsumer {
  private readonly held = new Map<string, Held>();
  private readonly groups = new Map<string, Promise<void>>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly receiving = new AbortController();
  private slotFreed: (() => void) | undefined;
  private extendTimer: NodeJS.Timeout | undefined;
  private receiveFailures = 0;
  received = 0;

  constructor(
    private readonly deps: QueueConsumerDeps,
    /** Aborts in-flight work (after the shutdown grace). */
    private readonly workSignal: AbortSignal,
  ) {}

  private get maxHeld(): number {
    return Math.max(10, this.deps.concurrency * 2);
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** committedAt of the oldest message held, for the lag figure. */
  oldestHeldCommittedAt(): number | undefined {
    let oldest: number | undefined;
    for (const h of this.held.values()) {
      if (h.committedAt !== undefined && (oldest === undefined || h.committedAt < oldest))
        oldest = h.committedAt;
    }
    return oldest;
  }

  /** Runs until `stopReceiving()`; then returns once the receive loop has ended. */
  async run(): Promise<void> {
    const everyMs = Math.max(1000, (this.deps.visibilityTimeoutSeconds * 1000) / 3);
    this.extendTimer = setInterval(() => void this.extend(), everyMs);
    this.extendTimer.unref();
    const signal = this.receiving.signal;
    try {
      while (!signal.aborted) {
        const room = await this.roomToReceive(signal);
        if (room === 0) continue;
        const messages = await this.receiveBatch(room, signal);
        for (const message of messages) this.accept(message);
      }
    } catch (error) {
      clearInterval(this.extendTimer);
      throw error;
    }
  }

  /**
   * How many messages to ask for; 0 after waiting, when a condition holds work back
   * (receiving more would only let them time out) or every slot is taken.
   */
  private async roomToReceive(signal: AbortSignal): Promise<number> {
    if (this.deps.conditions.any && this.held.size > 0) {
      await pause(1000, signal);
      return 0;
    }
    const room = this.maxHeld - this.held.size;
    if (room > 0) return room;
    await wakeableWait(signal, (wake) => (this.slotFreed = wake));
    return 0;
  }

  /** One long poll; a failure is raised as a condition (or logged) and backed off, giving no messages. */
  private async receiveBatch(room: number, signal: AbortSignal): Promise<QueueMessage[]> {
    try {
      const messages = await this.deps.queue.receive({
        max: Math.min(10, room),
        waitSeconds: this.deps.waitTimeSeconds,
        visibilitySeconds: this.deps.visibilityTimeoutSeconds,
        signal,
      });
      this.receiveFailures = 0;
      this.deps.conditions.clearRemote();
      return messages;
    } catch (error) {
      if (signal.aborted) return [];
      const kind = classifyCondition(error);
      if (kind) this.deps.conditions.raise(kind, error, { during: 'receive' });
      else this.deps.log.log('error', 'receiving from the queue failed', { error: errorMessage(error) });
      await pause(backoffMs(this.receiveFailures++), signal);
      return [];
    }
  }

  /** Stops taking messages (SIGTERM): the long poll is abandoned at once. */
  stopReceiving(): void {
    this.receiving.abort();
    this.slotFreed?.();
  }

  /** Resolves when every accepted message has been settled. */
  async drain(): Promise<void> {
    // Held messages keep being extended until the last one is settled.
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    clearInterval(this.extendTimer);
    this.extendTimer = undefined;
  }

  private accept(message: QueueMessage): void {
    this.received++;
    let committedAt: number | undefined;
    try {
      committedAt = Date.parse((JSON.parse(message.body) as { committedAt?: string }).committedAt ?? '');
      if (Number.isNaN(committedAt)) committedAt = undefined;
    } catch {
      committedAt = undefined;
    }
    this.held.set(message.receiptHandle, { message, committedAt });
    const group = message.groupId ?? message.messageId;
    const previous = this.groups.get(group) ?? Promise.resolve();
    // Whatever happened to the previous message of the group, this one is handled (and released).
    const next = previous
      .catch(() => undefined)
      .then(() => this.handle(message))
      .catch((error: unknown) => {
        this.deps.log.log('error', 'handling a message failed', {
          messageId: message.messageId,
          error: errorMessage(error),
        });
      });
    this.groups.set(group, next);
    this.inFlight.add(next);
    void next.finally(() => {
      this.inFlight.delete(next);
      if (this.groups.get(group) === next) this.groups.delete(group);
    });
  }

  private release(message: QueueMessage): void {
    this.held.delete(message.receiptHandle);
    const wake = this.slotFreed;
    this.slotFreed = undefined;
    wake?.();
  }

  private async handle(message: QueueMessage): Promise<void> {
    try {
      if (this.workSignal.aborted) {
        await this.handBack(message);
        return;
      }
      let version: VersionInfo & { targetId: string };
      try {
        version = replicationMessageSchema.parse(JSON.parse(message.body));
      } catch (error) {
        this.deps.onRefused('malformed-message', errorMessage(error), { messageId: message.messageId });
        await this.backOff(message);
        return;
      }
      if (version.targetId !== this.deps.targetId) {
        this.deps.onRefused(
          'malformed-message',
          `a message for target "${version.targetId}" in the queue of "${this.deps.targetId}"`,
          { messageId: message.messageId, path: version.path },
        );
        await this.backOff(message);
        return;
      }
      const held = this.deps.heldVersion(version.path);
      if (version.version > held + 1) this.deps.onGap(version.path, held, version.version);
      const outcome = await this.deps.work(version, this.workSignal);
      switch (outcome.kind) {
        case 'applied':
        case 'deleted':
        case 'skipped':
        case 'not-selected':
          await this.delete(message);
          return;
        case 'refused':
        case 'failed':
          await this.backOff(message);
          return;
        case 'aborted':
          // Stopping: hand it back at once, so the next start (or a restart by systemd) gets it now.
          await this.handBack(message);
          return;
      }
    } finally {
      this.release(message);
    }
  }

  private async delete(message: QueueMessage): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.deps.queue.delete(message.receiptHandle);
        return;
      } catch (error) {
        const kind = classifyCondition(error);
        if (!kind) {
          // An expired receipt handle: the message comes back and is skipped as a duplicate.
          this.deps.log.log('warn', 'could not delete a message; it will be redelivered and skipped', {
            messageId: message.messageId,
            error: errorMessage(error),
          });
          return;
        }
        this.deps.conditions.raise(kind, error, { during: 'delete' });
        await pause(backoffMs(attempt, 500, 5000));
      }
    }
  }

  private async handBack(message: QueueMessage): Promise<void> {
    const visible = this.deps.queue.setVisibility([{ receiptHandle: message.receiptHandle, seconds: 0 }]);
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
    await Promise.race([visible.catch(() => undefined), timeout]);
  }

  /** Releases a message for redelivery after a backoff that grows with its receive count. */
  private async backOff(message: QueueMessage): Promise<void> {
    const seconds = Math.min(900, Math.round(backoffMs(message.receiveCount - 1, 10_000, 900_000) / 1000));
    try {
      await this.deps.queue.setVisibility([{ receiptHandle: message.receiptHandle, seconds }]);
    } catch (error) {
      this.deps.log.log('warn', 'could not set the backoff of a failed message', {
        messageId: message.messageId,
        error: errorMessage(error),
      });
    }
  }

  /** Extends every held message (waiting or downloading) by a full visibility timeout. */
  private async extend(): Promise<void> {
    const entries = [...this.held.values()].map((h) => ({
      receiptHandle: h.message.receiptHandle,
      seconds: this.deps.visibilityTimeoutSeconds,
    }));
    if (entries.length === 0) return;
    try {
      await this.deps.queue.setVisibility(entries);
    } catch (error) {
      const kind = classifyCondition(error);
      if (kind) this.deps.conditions.raise(kind, error, { during: 'extend visibility' });
      else
        this.deps.log.log('warn', 'could not extend the visibility of held messages', {
          error: errorMessage(error),
        });
    }
  }
}
