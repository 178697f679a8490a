/**
 * FIFO receives as SQS makes them, over fauxqs 1.9.2's queue class (local/emulators.ts).
 *
 * SQS returns as many messages of one message group as it can in a receive, in order
 * (re:Post knowledge center, "sqs-fifo-messages-not-returned"); fauxqs returns one per group.
 * With one, a Lambda batch never held two messages of a group, so a handler that processes a
 * group's later message after an earlier one failed passed locally and broke the order on AWS,
 * and a poison message never took the rest of its group (failed with it, received as often) to
 * the DLQ, as it does on AWS.
 *
 * fauxqs also puts a returning message (visibility timeout over, or visibility set to 0) at the
 * front of its group one by one, which reverses a group that comes back whole; SQS keeps the
 * group's order, so the group is put back in sequence-number order.
 */

interface FifoMessage {
  readonly messageId: string;
  readonly body: string;
  readonly md5OfBody: string;
  readonly md5OfMessageAttributes?: string;
  readonly messageAttributes: Record<string, unknown>;
  /** Zero-padded to 20 digits: compares as a string. */
  readonly sequenceNumber?: string;
  approximateReceiveCount: number;
  approximateFirstReceiveTimestamp?: number;
}

interface FauxqsQueue {
  readonly name: string;
  readonly attributes: Record<string, string>;
  readonly fifoMessages: Map<string, FifoMessage[]>;
  readonly fifoLockedGroups: Map<string, number>;
  readonly inflightMessages: Map<
    string,
    { message: FifoMessage; receiptHandle: string; visibilityDeadline: number }
  >;
  readonly spy?: { addMessage(entry: Record<string, unknown>): void };
  isFifo(): boolean;
  processTimers(): void;
  changeVisibility(receiptHandle: string, timeoutSeconds: number): void;
  dequeueFifo(
    maxCount: number,
    visibilityTimeoutOverride: number | undefined,
    dlqResolver: ((arn: string) => { enqueue(message: FifoMessage): void } | undefined) | undefined,
  ): Record<string, unknown>[];
}

const PATCHED = Symbol.for('media-mirror.fauxqs-fifo');

function inSequence(queue: FauxqsQueue): void {
  for (const group of queue.fifoMessages.values()) {
    group.sort((a, b) => ((a.sequenceNumber ?? '') < (b.sequenceNumber ?? '') ? -1 : 1));
  }
}

export function receiveFifoGroupsWhole(queueClass: { prototype: object }): void {
  const proto = queueClass.prototype as FauxqsQueue & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  // Written against fauxqs 1.9.2's internals (package.json pins it): another version that changed
  // them must stop the stack here, not receive out of order in silence.
  const missing = ['processTimers', 'changeVisibility', 'dequeueFifo', 'isFifo'].filter(
    (method) => typeof (proto as unknown as Record<string, unknown>)[method] !== 'function',
  );
  if (missing.length > 0)
    throw new Error(`fauxqs's queue class has no ${missing.join(', ')}: local/fauxqs-fifo.ts needs updating`);
  proto[PATCHED] = true;

  const processTimers = proto.processTimers;
  proto.processTimers = function (this: FauxqsQueue) {
    const inFlight = this.inflightMessages.size;
    processTimers.call(this);
    // Runs on every receive and poll: sort only when messages came back.
    if (this.isFifo() && this.inflightMessages.size < inFlight) inSequence(this);
  };
  const changeVisibility = proto.changeVisibility;
  proto.changeVisibility = function (this: FauxqsQueue, receiptHandle: string, timeoutSeconds: number) {
    changeVisibility.call(this, receiptHandle, timeoutSeconds);
    if (this.isFifo() && timeoutSeconds === 0) inSequence(this);
  };

  proto.dequeueFifo = function (this: FauxqsQueue, maxCount, visibilityTimeoutOverride, dlqResolver) {
    return dequeueWholeGroups(this, maxCount, visibilityTimeoutOverride, dlqResolver);
  };
}

/** fauxqs's dequeueFifo, taking a group's messages until the batch is full instead of one. */
function dequeueWholeGroups(
  queue: FauxqsQueue,
  maxCount: number,
  visibilityTimeoutOverride: number | undefined,
  dlqResolver: Parameters<FauxqsQueue['dequeueFifo']>[2],
): Record<string, unknown>[] {
  queue.processTimers();
  const visibilityMs =
    (visibilityTimeoutOverride ?? Number.parseInt(queue.attributes.VisibilityTimeout ?? '30', 10)) * 1000;
  const redrive = redrivePolicy(queue);
  const deadLetters = redrive.dlqArn && dlqResolver ? dlqResolver(redrive.dlqArn) : undefined;
  const result: Record<string, unknown>[] = [];
  const count = Math.min(maxCount, 10);
  for (const [groupId, group] of queue.fifoMessages) {
    if (result.length >= count) break;
    if (queue.fifoLockedGroups.has(groupId)) continue;
    takeInOrder(queue, { groupId, group, result, count, visibilityMs, redrive, deadLetters });
    if (group.length === 0) queue.fifoMessages.delete(groupId);
  }
  return result;
}

interface Take {
  readonly groupId: string;
  readonly group: FifoMessage[];
  readonly result: Record<string, unknown>[];
  readonly count: number;
  readonly visibilityMs: number;
  readonly redrive: { readonly maxReceiveCount: number };
  readonly deadLetters: { enqueue(message: FifoMessage): void } | undefined;
}

/** The group's messages from its head until the batch is full; those past maxReceiveCount go to the DLQ. */
function takeInOrder(queue: FauxqsQueue, take: Take): void {
  const { groupId, group, result } = take;
  while (result.length < take.count && group.length > 0) {
    const msg = group.shift() as FifoMessage;
    msg.approximateReceiveCount++;
    msg.approximateFirstReceiveTimestamp ??= Date.now();
    if (take.deadLetters && msg.approximateReceiveCount > take.redrive.maxReceiveCount) {
      queue.spy?.addMessage({ ...spied(queue, msg), status: 'dlq' });
      take.deadLetters.enqueue(msg);
      continue;
    }
    result.push(received(queue, msg, take.visibilityMs));
    // One lock per message in flight: the group opens when the last is deleted or comes back.
    queue.fifoLockedGroups.set(groupId, (queue.fifoLockedGroups.get(groupId) ?? 0) + 1);
  }
}

function redrivePolicy(queue: FauxqsQueue): { maxReceiveCount: number; dlqArn: string | undefined } {
  try {
    const policy = JSON.parse(queue.attributes.RedrivePolicy ?? '{}') as {
      maxReceiveCount?: number;
      deadLetterTargetArn?: string;
    };
    return {
      maxReceiveCount: policy.maxReceiveCount ?? Number.POSITIVE_INFINITY,
      dlqArn: policy.deadLetterTargetArn,
    };
  } catch {
    // fauxqs ignores a policy it cannot parse; so does this.
    return { maxReceiveCount: Number.POSITIVE_INFINITY, dlqArn: undefined };
  }
}

function spied(queue: FauxqsQueue, msg: FifoMessage): Record<string, unknown> {
  return {
    service: 'sqs',
    queueName: queue.name,
    messageId: msg.messageId,
    body: msg.body,
    messageAttributes: msg.messageAttributes,
    timestamp: Date.now(),
  };
}

/** Puts the message in flight and answers it as fauxqs's own receive does. */
function received(queue: FauxqsQueue, msg: FifoMessage, visibilityMs: number): Record<string, unknown> {
  const receiptHandle = crypto.randomUUID();
  queue.inflightMessages.set(receiptHandle, {
    message: msg,
    receiptHandle,
    visibilityDeadline: Date.now() + visibilityMs,
  });
  return {
    MessageId: msg.messageId,
    ReceiptHandle: receiptHandle,
    MD5OfBody: msg.md5OfBody,
    Body: msg.body,
    ...(msg.md5OfMessageAttributes ? { MD5OfMessageAttributes: msg.md5OfMessageAttributes } : {}),
    ...(Object.keys(msg.messageAttributes).length > 0 ? { MessageAttributes: msg.messageAttributes } : {}),
  };
}
