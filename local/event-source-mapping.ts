/**
 * The local equivalent of a Lambda event-source mapping for SQS, with
 * ReportBatchItemFailures on: long-poll a queue, hand each batch to the function as an
 * `SQSEvent`, delete what succeeded. Records named in `batchItemFailures`, and the whole
 * batch when the invocation fails, are left alone: they come back after the queue's
 * visibility timeout, and the queue's redrive policy moves them to the DLQ after
 * maxReceiveCount receives.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSMessageAttributes, SQSRecord, SQSRecordAttributes } from 'aws-lambda';
import type { DeliveryFaults } from './delivery-faults.ts';
import type { QueueRef } from './resources.ts';

export interface Invocable {
  readonly name: string;
  /** Checked against the queue's visibility timeout when the mapping starts; unset, not checked. */
  readonly timeoutSeconds?: number;
  invoke(event: unknown): Promise<unknown>;
}

export interface EventSourceMappingOptions {
  readonly sqs: SQSClient;
  readonly queue: QueueRef;
  readonly fn: Invocable;
  readonly region: string;
  /** Records per invocation, 1-10. @default 10 */
  readonly batchSize?: number;
  /**
   * Receive loops, each with one batch in flight (Lambda's pollers for a standard or FIFO queue;
   * FIFO order holds across them because a group's next message waits for the one in flight).
   * @default 1
   */
  readonly pollers?: number;
  /** Long-poll wait per ReceiveMessage, 0-20 s. @default 2 */
  readonly waitTimeSeconds?: number;
  /** Problems worth a log line: failed invocations, failed deletes, receive errors. */
  readonly onError: (error: Error) => void;
  /** Lost, doubled, late and out-of-order deliveries (docs/chaos.md); none unless given. */
  readonly faults?: DeliveryFaults;
}

export interface MappingStats {
  batches: number;
  records: number;
  /** Records left for redelivery because the function reported them failed. */
  failedRecords: number;
  /** Invocations that threw (every record left for redelivery). */
  failedInvocations: number;
}

/** Turns received messages into the event Lambda passes for an SQS batch. */
export function toSqsEvent(messages: readonly Message[], queueArn: string, region: string): SQSEvent {
  return { Records: messages.map((m) => toSqsRecord(m, queueArn, region)) };
}

function recordAttributes(m: Message): SQSRecordAttributes {
  const a = m.Attributes ?? {};
  const attributes: SQSRecordAttributes = {
    ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
    SentTimestamp: a.SentTimestamp ?? String(Date.now()),
    SenderId: a.SenderId ?? '000000000000',
    ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
  };
  if (a.SequenceNumber !== undefined) attributes.SequenceNumber = a.SequenceNumber;
  if (a.MessageGroupId !== undefined) attributes.MessageGroupId = a.MessageGroupId;
  if (a.MessageDeduplicationId !== undefined) attributes.MessageDeduplicationId = a.MessageDeduplicationId;
  if (a.AWSTraceHeader !== undefined) attributes.AWSTraceHeader = a.AWSTraceHeader;
  return attributes;
}

function recordMessageAttributes(m: Message): SQSMessageAttributes {
  const messageAttributes: SQSMessageAttributes = {};
  for (const [name, v] of Object.entries(m.MessageAttributes ?? {})) {
    messageAttributes[name] = {
      ...(v.StringValue !== undefined ? { stringValue: v.StringValue } : {}),
      ...(v.BinaryValue !== undefined ? { binaryValue: Buffer.from(v.BinaryValue).toString('base64') } : {}),
      stringListValues: v.StringListValues ?? [],
      binaryListValues: (v.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: v.DataType ?? 'String',
    };
  }
  return messageAttributes;
}

function toSqsRecord(m: Message, queueArn: string, region: string): SQSRecord {
  const attributes = recordAttributes(m);
  const messageAttributes = recordMessageAttributes(m);
  const record: SQSRecord = {
    messageId: m.MessageId ?? '',
    receiptHandle: m.ReceiptHandle ?? '',
    body: m.Body ?? '',
    attributes,
    messageAttributes,
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
  if (m.MD5OfMessageAttributes !== undefined) {
    // Keep Lambda's key order: md5OfMessageAttributes follows md5OfBody.
    const { eventSource, eventSourceARN, awsRegion, ...head } = record;
    return {
      ...head,
      md5OfMessageAttributes: m.MD5OfMessageAttributes,
      eventSource,
      eventSourceARN,
      awsRegion,
    };
  }
  return record;
}

/**
 * The message ids to keep (not delete) after a successful invocation, or `'all'` when the
 * response is one Lambda treats as a failure of the whole batch.
 */
export function failedItems(response: unknown, event: SQSEvent): Set<string> | 'all' {
  // The Lambda developer guide ("Handling errors for an SQS event source") counts only a null or
  // empty response as success, and "an invalid JSON response" as a complete failure: a string, an
  // array or a number is no SQSBatchResponse, and the batch comes back (local/README.md).
  if (response === null || response === undefined) return new Set();
  if (typeof response !== 'object' || Array.isArray(response)) return 'all';
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === null || failures === undefined) return new Set();
  if (!Array.isArray(failures)) return 'all';
  const ids = new Set(event.Records.map((r) => r.messageId));
  const failed = new Set<string>();
  for (const f of failures as unknown[]) {
    const id = (f as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !ids.has(id)) return 'all';
    failed.add(id);
  }
  return failed;
}

export class SqsEventSourceMapping {
  readonly stats: MappingStats = { batches: 0, records: 0, failedRecords: 0, failedInvocations: 0 };
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  /** Messages a fault holds back: after the next batch (reorder) or a while (delay). */
  private heldBack: Message[] = [];
  private readonly late = new Set<Promise<void>>();

  constructor(private readonly options: EventSourceMappingOptions) {
    const batch = options.batchSize ?? 10;
    if (!Number.isInteger(batch) || batch < 1 || batch > 10) throw new Error(`batchSize ${batch}: 1-10`);
  }

  get description(): string {
    return `${this.options.queue.name} -> ${this.options.fn.name}`;
  }

  /**
   * Polls, once the queue hides a message at least as long as the function may run: Lambda refuses
   * to create the mapping otherwise (InvalidParameterValueException), since a message would come
   * back to a second invocation while the first still runs.
   */
  async start(): Promise<void> {
    await this.checkVisibilityTimeout();
    this.loop ??= Promise.all(Array.from({ length: this.options.pollers ?? 1 }, () => this.run())).then(
      () => undefined,
    );
  }

  private async checkVisibilityTimeout(): Promise<void> {
    const { sqs, queue, fn } = this.options;
    if (fn.timeoutSeconds === undefined) return;
    const out = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queue.url, AttributeNames: ['VisibilityTimeout'] }),
    );
    const visibility = Number(out.Attributes?.VisibilityTimeout);
    if (visibility < fn.timeoutSeconds) {
      throw new Error(
        `${this.description}: Queue visibility timeout: ${visibility} seconds is less than Function timeout: ${fn.timeoutSeconds} seconds`,
      );
    }
  }

  /** Stops polling and waits for the batch in progress (its invocation and deletes). */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await Promise.allSettled([...this.late]);
  }

  private async run(): Promise<void> {
    const { sqs, queue } = this.options;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let messages: Message[];
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queue.url,
            MaxNumberOfMessages: this.options.batchSize ?? 10,
            WaitTimeSeconds: this.options.waitTimeSeconds ?? 2,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: signal },
        );
        messages = out.Messages ?? [];
      } catch (err) {
        if (signal.aborted) break;
        this.report(`receive from ${queue.name} failed`, err);
        await sleep(1_000, undefined, { signal }).catch(() => undefined);
        continue;
      }
      if (this.options.faults) await this.deliverWithFaults(messages, this.options.faults);
      else if (messages.length > 0) await this.process(messages);
    }
  }

  /**
   * Each message's fate: lost (deleted unseen, as if the function had taken it), doubled (a
   * second invocation after the first), late (its own invocation later), or held back until after
   * the next batch. Held messages stay in flight: past the visibility timeout they come back too.
   */
  private async deliverWithFaults(messages: Message[], faults: DeliveryFaults): Promise<void> {
    const now: Message[] = [];
    const twice: Message[] = [];
    const lost: Message[] = [];
    const held = this.heldBack;
    this.heldBack = [];
    for (const m of messages) {
      const fate = faults.fate(this.options.fn.name);
      if (fate === 'drop') lost.push(m);
      else if (fate === 'reorder') this.heldBack.push(m);
      else if (fate === 'delay') this.later([m], faults.delayMs());
      else {
        now.push(m);
        if (fate === 'duplicate') twice.push(m);
      }
    }
    if (lost.length > 0) await this.delete(lost);
    if (now.length > 0) await this.process(now);
    if (twice.length > 0) await this.process(twice);
    if (held.length > 0) await this.process(held);
  }

  private later(messages: Message[], ms: number): void {
    const p = sleep(ms, undefined, { signal: this.abort.signal })
      .then(() => this.process(messages))
      .catch(() => undefined);
    this.late.add(p);
    void p.finally(() => this.late.delete(p));
  }

  private async process(messages: Message[]): Promise<void> {
    const { queue, fn, region } = this.options;
    const event = toSqsEvent(messages, queue.arn, region);
    this.stats.batches++;
    this.stats.records += messages.length;
    let response: unknown;
    try {
      response = await fn.invoke(event);
    } catch (err) {
      this.stats.failedInvocations++;
      this.report(
        `${fn.name} failed on a batch of ${messages.length} from ${queue.name}; ` +
          'the messages return after the visibility timeout',
        err,
      );
      return;
    }
    const failed = failedItems(response, event);
    if (failed === 'all') {
      this.stats.failedRecords += messages.length;
      this.report(
        `${fn.name} returned an invalid partial batch response; the whole batch is retried`,
        new Error(JSON.stringify(response)),
      );
      return;
    }
    this.stats.failedRecords += failed.size;
    const done = messages.filter((m) => m.MessageId !== undefined && !failed.has(m.MessageId));
    if (done.length > 0) await this.delete(done);
  }

  private async delete(done: Message[]): Promise<void> {
    const { sqs, queue } = this.options;
    try {
      const out = await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queue.url,
          Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
      for (const f of out.Failed ?? []) {
        this.report(`delete from ${queue.name} failed`, new Error(`${f.Code ?? ''} ${f.Message ?? ''}`));
      }
    } catch (err) {
      this.report(`delete from ${queue.name} failed`, err);
    }
  }

  private report(what: string, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.options.onError(new Error(`${what}: ${e.message}`, { cause: e }));
  }
}
