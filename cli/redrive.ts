/**
 * `media-mirror redrive --target <id> | --ingest | --completion [--dry-run]`: sends a queue's parked
 * messages (its DLQ) back to it, once the cause is fixed.
 *
 * - On AWS: SQS's own message move task (StartMessageMoveTask with the DLQ as source and
 *   no destination: back to the queue the messages came from).
 * - On an emulator (an SQS endpoint override; fauxqs has no move tasks): the same
 *   semantics by hand. Receive from the DLQ, send each message to the queue with its
 *   body, attributes and (FIFO) MessageGroupId, but a NEW MessageDeduplicationId, since
 *   the queue would drop a repeat of the original id within its 5-minute window; delete
 *   it from the DLQ only once the send succeeded.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListMessageMoveTasksCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { sleep } from '../common/retry.ts';
import { terminalText } from '../common/terminal-text.ts';
import { ConfigError, MirrorCliError, UsageError } from './errors.ts';
import type { OpsContext } from './ops-context.ts';
import { selectTargets } from './ops-context.ts';

type Sqs = Pick<SQSClient, 'send'>;

export interface RedriveOptions {
  readonly targetId?: string | undefined;
  readonly ingest?: boolean | undefined;
  /** The multipart completions' queue. */
  readonly completion?: boolean | undefined;
  readonly dryRun: boolean;
  /** AWS: wait for the move task to finish and report its counts. */
  readonly wait?: boolean | undefined;
  /** Polling interval while waiting, ms. @default 2000 */
  readonly pollMs?: number | undefined;
}

export interface RedriveResult {
  /** `local`: moved by this command; `aws`: a message move task. */
  readonly method: 'local' | 'aws';
  /** `ingest`, `completion` or the target id. */
  readonly queueOf: string;
  readonly queue: string;
  readonly dlq: string;
  readonly dryRun: boolean;
  /** Messages in the DLQ before anything was done (ApproximateNumberOfMessages). */
  readonly waiting: number;
  /**
   * Messages of the DLQ someone was reading then (ApproximateNumberOfMessagesNotVisible): parked
   * too, and visible again when their visibility timeout ends.
   */
  readonly inFlight: number;
  readonly moved: number;
  readonly failed: number;
  /** Messages still in the DLQ afterwards (local), or left to move (aws, while running). */
  readonly left: number | undefined;
  readonly taskHandle?: string | undefined;
  readonly taskStatus?: string | undefined;
  readonly errors: readonly string[];
}

const queueName = (urlOrArn: string) => urlOrArn.split(/[/:]/).pop() ?? urlOrArn;
const isFifo = (url: string) => url.endsWith('.fifo');

async function approximateMessages(
  sqs: Sqs,
  queueUrl: string,
): Promise<{ waiting: number; inFlight: number }> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return {
    waiting: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
  };
}

/** The DLQ of a queue, from its redrive policy. */
async function findDlq(sqs: Sqs, queueUrl: string): Promise<{ arn: string; url: string }> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }),
  );
  const policy = out.Attributes?.RedrivePolicy;
  let arn: string | undefined;
  try {
    arn = policy ? (JSON.parse(policy) as { deadLetterTargetArn?: string }).deadLetterTargetArn : undefined;
  } catch {
    arn = undefined;
  }
  if (!arn) throw new ConfigError(`queue ${queueUrl} has no redrive policy naming a DLQ`);
  const [, , , , account, name] = arn.split(':');
  if (!name) throw new ConfigError(`the redrive policy of ${queueUrl} names a malformed DLQ ARN ${arn}`);
  const url = await sqs.send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account }));
  if (!url.QueueUrl) throw new ConfigError(`no URL for the DLQ ${arn}`);
  return { arn, url: url.QueueUrl };
}

async function queueArn(sqs: Sqs, queueUrl: string): Promise<string> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new ConfigError(`queue ${queueUrl} reports no QueueArn`);
  return arn;
}

/** Attributes as SendMessage takes them (what ReceiveMessage returns has extra, empty lists). */
function sendableAttributes(
  attributes: Record<string, MessageAttributeValue> | undefined,
): Record<string, MessageAttributeValue> | undefined {
  if (!attributes || Object.keys(attributes).length === 0) return undefined;
  return Object.fromEntries(
    Object.entries(attributes).map(([name, v]) => [
      name,
      {
        DataType: v.DataType,
        ...(v.StringValue === undefined ? {} : { StringValue: v.StringValue }),
        ...(v.BinaryValue === undefined ? {} : { BinaryValue: v.BinaryValue }),
      },
    ]),
  );
}

/** A deduplication id of its own for each redriven message: the queue would drop the original id as a repeat. */
export function redriveDeduplicationId(original: string, runId: string): string {
  return createHash('sha256').update(`${original}\nredrive\n${runId}`).digest('hex');
}

/** What one run of `moveMessages` has done so far. */
interface MoveRun {
  readonly sqs: Sqs;
  readonly dlqUrl: string;
  readonly queueUrl: string;
  readonly fifo: boolean;
  readonly runId: string;
  readonly seen: Set<string>;
  /** Receipt handles of the messages that stay in the DLQ. */
  readonly kept: string[];
  readonly errors: string[];
  moved: number;
  failed: number;
}

/** Sends one DLQ message back to its queue (FIFO: same group, a deduplication id of this run's). */
async function sendBack(run: MoveRun, m: Message): Promise<void> {
  const attributes = m.Attributes ?? {};
  const group = attributes.MessageGroupId;
  if (run.fifo && !group) throw new Error('it has no MessageGroupId');
  await run.sqs.send(
    new SendMessageCommand({
      QueueUrl: run.queueUrl,
      MessageBody: m.Body ?? '',
      MessageAttributes: sendableAttributes(m.MessageAttributes),
      ...(run.fifo
        ? {
            MessageGroupId: group,
            MessageDeduplicationId: redriveDeduplicationId(
              attributes.MessageDeduplicationId ?? m.MessageId ?? '',
              run.runId,
            ),
          }
        : {}),
    }),
  );
}

/** Moves one message: sent back, then deleted from the DLQ; a failed send keeps it there. */
async function moveOne(run: MoveRun, m: Message): Promise<void> {
  try {
    await sendBack(run, m);
  } catch (err) {
    run.failed++;
    run.errors.push(`message ${m.MessageId}: not sent back (${(err as Error).message}); it stays in the DLQ`);
    if (m.ReceiptHandle) run.kept.push(m.ReceiptHandle);
    return;
  }
  run.moved++;
  try {
    await run.sqs.send(new DeleteMessageCommand({ QueueUrl: run.dlqUrl, ReceiptHandle: m.ReceiptHandle }));
  } catch (err) {
    run.errors.push(
      `message ${m.MessageId}: sent back, but not deleted from the DLQ (${(err as Error).message}): it may be redriven twice`,
    );
  }
}

/** One receive from the DLQ and the moves of its messages; false once it brings nothing new. */
async function moveBatch(run: MoveRun, input: MoveInput): Promise<boolean> {
  const out = await run.sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: run.dlqUrl,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: input.waitTimeSeconds ?? 1,
      VisibilityTimeout: input.visibilityTimeoutSeconds ?? 60,
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    }),
  );
  const messages: Message[] = out.Messages ?? [];
  // A message seen again (its visibility ran out mid-run) ends the run rather than looping.
  const fresh = messages.filter((m) => !run.seen.has(m.MessageId ?? ''));
  for (const m of messages) {
    if (fresh.includes(m)) continue;
    if (m.ReceiptHandle) run.kept.push(m.ReceiptHandle);
  }
  for (const m of fresh) {
    run.seen.add(m.MessageId ?? '');
    await moveOne(run, m);
  }
  return fresh.length > 0;
}

type MoveInput = {
  dlqUrl: string;
  queueUrl: string;
  visibilityTimeoutSeconds?: number;
  waitTimeSeconds?: number;
};

/**
 * Moves every message of `dlqUrl` to `queueUrl` (the emulator path): returns moved and failed
 * counts. A message whose send fails stays in the DLQ (made visible again at the end).
 */
export async function moveMessages(
  sqs: Sqs,
  input: MoveInput,
): Promise<{ moved: number; failed: number; errors: string[] }> {
  const run: MoveRun = {
    sqs,
    dlqUrl: input.dlqUrl,
    queueUrl: input.queueUrl,
    fifo: isFifo(input.queueUrl),
    runId: randomUUID(),
    seen: new Set(),
    kept: [],
    errors: [],
    moved: 0,
    failed: 0,
  };
  while (await moveBatch(run, input)) {
    // next batch
  }
  // What stays behind is visible again at once, not after the visibility timeout.
  for (const handle of run.kept) {
    await sqs
      .send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: input.dlqUrl,
          ReceiptHandle: handle,
          VisibilityTimeout: 0,
        }),
      )
      .catch(() => undefined);
  }
  return { moved: run.moved, failed: run.failed, errors: run.errors };
}

export interface MoveTaskReport {
  readonly taskHandle: string | undefined;
  readonly status: string | undefined;
  readonly moved: number;
  readonly toMove: number | undefined;
  readonly failureReason: string | undefined;
}

/** Starts SQS's message move task from the DLQ back to its source queue(s). */
async function startMoveTask(
  sqs: Sqs,
  dlqArn: string,
  options: {
    wait?: boolean | undefined;
    pollMs?: number | undefined;
    sleep?: (ms: number) => Promise<void>;
  } = {},
): Promise<MoveTaskReport> {
  const started = await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn }));
  const wait = options.sleep ?? sleep;
  for (;;) {
    const list = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlqArn, MaxResults: 1 }));
    const task = list.Results?.[0];
    const report: MoveTaskReport = {
      taskHandle: started.TaskHandle ?? task?.TaskHandle,
      status: task?.Status,
      moved: task?.ApproximateNumberOfMessagesMoved ?? 0,
      toMove: task?.ApproximateNumberOfMessagesToMove,
      failureReason: task?.FailureReason,
    };
    if (!options.wait || (task?.Status !== undefined && task.Status !== 'RUNNING')) return report;
    await wait(options.pollMs ?? 2000);
  }
}

/**
 * The queues of no target: each redriven by the flag of its name (`--ingest`, `--completion`); on AWS
 * its URL comes from `--<name>-queue-url` or MIRROR_<NAME>_QUEUE_URL (cli/ops-context.ts).
 */
const QUEUES_OF_NO_TARGET = ['ingest', 'completion'] as const;

/** The queue to redrive into and its DLQ (from the options; the DLQ URL may still be unknown). */
function redriveQueues(
  ctx: OpsContext,
  options: RedriveOptions,
): { queueOf: string; queueUrl: string; dlqUrl: string | undefined } {
  const named = QUEUES_OF_NO_TARGET.filter((q) => options[q] === true);
  if (named.length + (options.targetId === undefined ? 0 : 1) !== 1) {
    throw new UsageError('redrive needs exactly one of --target <id>, --ingest or --completion');
  }
  const [queue] = named;
  if (queue) {
    const { queueUrl, dlqUrl } = ctx[queue];
    const variable = `MIRROR_${queue.toUpperCase()}_QUEUE_URL`;
    if (!queueUrl) throw new ConfigError(`no ${queue} queue URL: pass --${queue}-queue-url (or ${variable})`);
    return { queueOf: queue, queueUrl, dlqUrl };
  }
  const [target] = selectTargets(ctx, [options.targetId as string]);
  const queueOf = target?.id ?? '';
  const queueUrl = target?.queueUrl;
  if (!queueUrl) throw new ConfigError(`no queue URL for ${queueOf}: pass --queue-url ${queueOf}=<url>`);
  return { queueOf, queueUrl, dlqUrl: target?.dlqUrl };
}

export async function runRedrive(ctx: OpsContext, sqs: Sqs, options: RedriveOptions): Promise<RedriveResult> {
  const queues = redriveQueues(ctx, options);
  const { queueOf, queueUrl } = queues;
  let dlqUrl = queues.dlqUrl;
  let dlqArn: string | undefined;
  if (!dlqUrl) ({ url: dlqUrl, arn: dlqArn } = await findDlq(sqs, queueUrl));
  const { waiting, inFlight } = await approximateMessages(sqs, dlqUrl);
  const base = { queueOf, queue: queueUrl, dlq: dlqUrl, dryRun: options.dryRun, waiting, inFlight };
  const emulated = ctx.sqsEndpoint !== undefined;

  // By hand, a message someone is reading is received once its visibility ends (the emulator makes
  // it visible again only at a receive): tried too. A move task moves what is visible.
  if (options.dryRun || waiting + (emulated ? inFlight : 0) === 0) {
    return {
      ...base,
      method: emulated ? 'local' : 'aws',
      moved: 0,
      failed: 0,
      left: waiting + inFlight,
      errors: [],
    };
  }
  if (emulated) {
    const moved = await moveMessages(sqs, { dlqUrl, queueUrl });
    const after = await approximateMessages(sqs, dlqUrl);
    return {
      ...base,
      method: 'local',
      moved: moved.moved,
      failed: moved.failed,
      left: after.waiting + after.inFlight,
      errors: moved.errors,
    };
  }
  dlqArn ??= await queueArn(sqs, dlqUrl);
  const task = await startMoveTask(sqs, dlqArn, { wait: options.wait, pollMs: options.pollMs });
  const errors = task.failureReason ? [`the move task failed: ${task.failureReason}`] : [];
  return {
    ...base,
    method: 'aws',
    moved: task.moved,
    failed: task.status === 'FAILED' ? Math.max(0, (task.toMove ?? waiting) - task.moved) : 0,
    left: task.toMove === undefined ? undefined : Math.max(0, task.toMove - task.moved),
    taskHandle: task.taskHandle,
    taskStatus: task.status,
    errors,
  };
}

export function formatRedriveResult(r: RedriveResult): string {
  const lines = [...summaryLines(r, queueName(r.dlq), queueName(r.queue))];
  for (const e of r.errors) lines.push(`  ${terminalText(e)}`);
  return lines.join('\n');
}

function summaryLines(r: RedriveResult, from: string, to: string): string[] {
  const reading =
    r.inFlight > 0 ? `; ${r.inFlight} more being read (in flight), moved once visible again` : '';
  if (r.dryRun)
    return [
      `dry run: would move ${r.waiting} message(s) from ${from} back to ${to} (nothing moved)${reading}`,
    ];
  if (r.waiting + r.inFlight === 0) return [`nothing to redrive: ${from} is empty`];
  if (r.waiting === 0 && r.method === 'aws')
    return [
      `nothing to redrive now: the ${r.inFlight} message(s) of ${from} are being read (in flight); run again once they are visible`,
    ];
  if (r.method === 'local')
    return [
      `moved ${r.moved} message(s) from ${from} back to ${to}; ${r.failed} failed; ${r.left ?? '?'} left in the DLQ`,
    ];
  return [
    `started message move task from ${from} back to ${to}: ~${r.waiting} message(s)`,
    `task     ${r.taskHandle ?? '?'}`,
    `status   ${r.taskStatus ?? '?'}: ${r.moved} moved${r.left === undefined ? '' : `, ${r.left} to go`}${r.failed > 0 ? `, ${r.failed} failed` : ''}`,
    ...(r.taskStatus === 'RUNNING'
      ? ['follow it with --wait, or: aws sqs list-message-move-tasks --source-arn <dlq arn>']
      : []),
  ];
}

/** Exit status: a redrive that left failures behind is a failure. */
export function redriveFailed(r: RedriveResult): MirrorCliError | undefined {
  if (r.failed > 0 || r.taskStatus === 'FAILED' || r.taskStatus === 'CANCELLED') {
    return new MirrorCliError(`redrive of ${r.queueOf}: ${r.failed} message(s) not moved`);
  }
  return undefined;
}
