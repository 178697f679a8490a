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

/**
 * Processes every group at once. `startGroup` gives each group its record handler, made before the
 * group's first record, so a group's records may share state (what this invocation already did
 * for that group's key) that no other group sees.
 */
export async function processFifoGroupsInParallel(
  event: SQSEvent,
  context: Context,
  startGroup: () => (record: SQSRecord) => Promise<void>,
): Promise<SQSBatchResponse> {
  const responses = await Promise.all(
    messageGroups(event.Records).map((records) =>
      processPartialResponse({ Records: records }, startGroup(), new SqsFifoPartialProcessorAsync(), {
        context,
        skipGroupOnError: true,
        // A group that fails whole is reported like any other: only its records come back.
        throwOnFullBatchFailure: false,
      }),
    ),
  );
  return { batchItemFailures: responses.flatMap((r) => r.batchItemFailures) };
}
