/**
 * An SQS FIFO batch with its message groups applied side by side: each group in order, a failure
 * fails the rest of its own group only (Powertools' `skipGroupOnError`), the other groups go on.
 *
 * Powertools' SqsFifoPartialProcessorAsync (batch 2.35.0) awaits each record before starting the
 * next even with `skipGroupOnError`, and keeps one "current group" per processor, so one instance
 * cannot run two groups at once. So each group gets a processor of its own over its own records:
 * Powertools still decides, per group, what is processed and what is failed, and the groups only
 * share the wall clock.
 */
import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';

/** The batch's records by message group, each group in the batch's order (the queue's order). */
export function messageGroups(records: readonly SQSRecord[]): SQSRecord[][] {
  const groups = new Map<string, SQSRecord[]>();
  for (const record of records) {
    // Every FIFO record has a group; one without (a standard queue) has no order to keep.
    const id = record.attributes.MessageGroupId ?? `message:${record.messageId}`;
    const group = groups.get(id);
    if (group) group.push(record);
    else groups.set(id, [record]);
  }
  return [...groups.values()];
}

/** When the batch must stop: how long before the invocation's end, and how long work in flight then gets. */
export interface BatchDeadline {
  /**
   * No record starts, and work in flight is told to stop (its signal aborts), this long before the
   * invocation's end. @default 30,000, or a quarter of the invocation's time when that is shorter
   */
  readonly stopBeforeMs?: number | undefined;
  /**
   * Work in flight at the stop gets this long to finish or clean up (abort a part copy) before its
   * record is reported unfinished regardless. @default half of stopBeforeMs
   */
  readonly graceMs?: number | undefined;
}

export const DEFAULT_STOP_BEFORE_MS = 30_000;

/** The record's work did not finish before the invocation's deadline: it comes back whole, not failed. */
export class DeadlineReachedError extends Error {
  override readonly name = 'DeadlineReachedError';
  constructor(
    readonly started: boolean,
    /** Its work ignored the stop and had not settled when the grace ran out: it may still write. */
    readonly stillRunning = false,
  ) {
    super(
      stillRunning
        ? 'still running when the invocation had to answer: it comes back after the visibility timeout'
        : started
          ? 'stopped before the invocation timed out: it comes back from the queue'
          : 'not started: the invocation was near its deadline',
    );
  }
}

/** A record handler given the signal that aborts when the batch's deadline comes. */
export type GroupRecordHandler = (record: SQSRecord, signal: AbortSignal) => Promise<void>;

/**
 * Processes every group at once. `startGroup` gives each group its record handler, made before the
 * group's first record, so a group's records may share state (what this invocation already did
 * for that group's key) that no other group sees.
 *
 * Before the invocation's deadline (`deadline`), nothing new starts and work in flight is aborted:
 * only the records not finished are reported (each group's rest with them, in order), so one slow
 * record never returns the batch's finished ones with it, as a timed-out invocation would.
 */
export async function processFifoGroupsInParallel(
  event: SQSEvent,
  context: Context,
  startGroup: () => GroupRecordHandler,
  deadline: BatchDeadline = {},
): Promise<SQSBatchResponse & { deferred: SQSRecord[] }> {
  const remaining = context.getRemainingTimeInMillis();
  const stopBeforeMs = deadline.stopBeforeMs ?? Math.min(DEFAULT_STOP_BEFORE_MS, remaining / 4);
  const graceMs = deadline.graceMs ?? stopBeforeMs / 2;
  const stop = new AbortController();
  const untilStop = remaining - stopBeforeMs;
  // Already past the stop: abort now, before any record starts (a timer would fire after they did).
  if (untilStop <= 0) stop.abort();
  const timer = untilStop > 0 ? setTimeout(() => stop.abort(), untilStop) : undefined;
  try {
    const deferred: SQSRecord[] = [];
    const responses = await Promise.all(
      messageGroups(event.Records).map(async (records) => {
        const handle = startGroup();
        // The group's first failure decides for its rest (Powertools skips them): when it was the
        // deadline, every record of the group that comes back was only deferred, none failed. A
        // group whose work is still running is not deferred: handed back at once, its next record
        // could be applied by another invocation before this one's late write lands over it.
        let stoppedByDeadline = false;
        const response = await processPartialResponse(
          { Records: records },
          (record: SQSRecord) =>
            withinDeadline(handle, record, stop.signal, graceMs).catch((error: unknown) => {
              if (error instanceof DeadlineReachedError && !error.stillRunning) stoppedByDeadline = true;
              throw error;
            }),
          new SqsFifoPartialProcessorAsync(),
          {
            context,
            skipGroupOnError: true,
            // A group that fails whole is reported like any other: only its records come back.
            throwOnFullBatchFailure: false,
          },
        );
        if (stoppedByDeadline) {
          const returned = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
          deferred.push(...records.filter((r) => returned.has(r.messageId)));
        }
        return response;
      }),
    );
    return { batchItemFailures: responses.flatMap((r) => r.batchItemFailures), deferred };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs one record unless the stop has come; once it comes, the record's work has `graceMs` to
 * settle (finish, or clean up after its signal) before it is reported unfinished regardless, so
 * the invocation answers before it times out even if the work ignores its signal.
 */
async function withinDeadline(
  handle: GroupRecordHandler,
  record: SQSRecord,
  signal: AbortSignal,
  graceMs: number,
): Promise<void> {
  if (signal.aborted) throw new DeadlineReachedError(false);
  const work = handle(record, signal);
  let timer: NodeJS.Timeout | undefined;
  const givenUp = new Promise<never>((_, reject) => {
    const giveUp = () => {
      timer = setTimeout(() => reject(new DeadlineReachedError(true, true)), graceMs);
    };
    signal.addEventListener('abort', giveUp, { once: true });
    // Settled first: no timer, no listener left behind.
    work.then(
      () => signal.removeEventListener('abort', giveUp),
      () => signal.removeEventListener('abort', giveUp),
    );
  });
  givenUp.catch(() => undefined);
  try {
    return await Promise.race([work, givenUp]);
  } catch (error) {
    // Work that gave up because its signal aborted was stopped by the deadline, not by a fault.
    throw signal.aborted && !(error instanceof DeadlineReachedError) ? new DeadlineReachedError(true) : error;
  } finally {
    clearTimeout(timer);
  }
}
