/** `media-mirror reconcile` and `redrive`: where they find things, and redrive's semantics on both paths. */
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OpsContext, parsePairs, resolveOpsContext, selectTargets } from '../../../cli/ops-context.ts';
import { formatReconcileResult } from '../../../cli/reconcile.ts';
import {
  formatRedriveResult,
  moveMessages,
  redriveDeduplicationId,
  redriveFailed,
  runRedrive,
} from '../../../cli/redrive.ts';
import { localEndpoints as endpoints } from '../../support/local-endpoints.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-ops-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resolveOpsContext', () => {
  it('local: everything from the endpoints file (given, or $MIRROR_DATA_DIR/endpoints.json)', async () => {
    await writeFile(join(dir, 'endpoints.json'), JSON.stringify(endpoints));
    const ctx = await resolveOpsContext({ endpoints: 'endpoints.json' }, {}, dir);
    expect(ctx).toMatchObject({
      mode: 'local',
      region: 'us-east-1',
      table: 'mirror-ledger',
      originBucket: 'mirror-origin',
      sqsEndpoint: 'http://127.0.0.1:4566',
      s3Endpoint: 'http://127.0.0.1:4568',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      ingest: { queueUrl: endpoints.ingest.queue, dlqUrl: endpoints.ingest.dlq },
      completion: { queueUrl: endpoints.completion.queue, dlqUrl: endpoints.completion.dlq },
    });
    expect(ctx.targets).toEqual([
      {
        id: 'eu-west-1',
        kind: 's3',
        queueUrl: endpoints.targets['eu-west-1'].queue,
        dlqUrl: endpoints.targets['eu-west-1'].dlq,
        bucket: 'replica-eu-west-1',
        // Its bucket's region: the local S3 refuses a request signed for another, as S3 does.
        region: 'eu-west-1',
        keyPrefix: 'media/',
        pathPrefix: undefined,
        dryRun: false,
      },
      {
        id: 'onprem-dc1',
        kind: 'pull',
        queueUrl: endpoints.targets['onprem-dc1'].queue,
        dlqUrl: endpoints.targets['onprem-dc1'].dlq,
        bucket: undefined,
        region: 'us-east-1',
        keyPrefix: '',
        pathPrefix: 'public/',
        dryRun: false,
      },
    ]);
    const viaDataDir = await resolveOpsContext({}, { MIRROR_DATA_DIR: '.' }, dir);
    expect(viaDataDir.mode).toBe('local');
  });

  it('an endpoints file of an older stack (no table, no emulator endpoints) says so', async () => {
    await writeFile(join(dir, 'old.json'), JSON.stringify({ api: 'http://x', token: 't' }));
    await expect(resolveOpsContext({ endpoints: 'old.json' }, {}, dir)).rejects.toThrow(
      /old\.json lacks what reconcile\/redrive need.*table/,
    );
  });

  it('no endpoints file and no --table: how to fix it', async () => {
    await expect(resolveOpsContext({}, { MIRROR_DATA_DIR: 'nowhere' }, dir)).rejects.toThrow(
      /no endpoints file at .*nowhere\/endpoints\.json: start the local stack .* on AWS pass --table/,
    );
  });

  it('a ./mirror.config.json others may write (or another user owns) is refused when no --config names it (probe localsec)', async () => {
    // Read from the working directory unasked: a planted one named the attacker's bucket as a
    // target, and reconcile sent HEADs there with the operator's credentials, naming every path.
    const shared = await mkdtemp(join(tmpdir(), 'mm-ops-planted-'));
    try {
      const planted = join(shared, 'mirror.config.json');
      await writeFile(
        planted,
        JSON.stringify({
          targets: [{ id: 'elsewhere', kind: 's3', region: 'eu-west-1', bucketName: 'attacker-bucket' }],
        }),
      );
      await chmod(planted, 0o666);
      const flags = { table: 'MediaMirror-Ledger', originBucket: 'mm-origin' };
      await expect(resolveOpsContext(flags, {}, shared)).rejects.toThrow(
        `topology ${planted} (read since no --config names one) is not to be trusted: other users may write it (mode 0666)`,
      );
      if (process.getuid?.() === 0) {
        await chmod(planted, 0o644);
        await chown(planted, 65534, 65534);
        await expect(resolveOpsContext(flags, {}, shared)).rejects.toThrow(
          /belongs to another user \(uid 65534\)/,
        );
        await chown(planted, 0, 0);
      }
      await chmod(planted, 0o664);
      const ctx = await resolveOpsContext(flags, {}, shared);
      expect(ctx.targets.map((t) => t.bucket)).toEqual(['attacker-bucket']);
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  it('AWS: --table, the topology, --queue-url and --bucket; no endpoint override means real SQS', async () => {
    await writeFile(
      join(dir, 'mirror.config.json'),
      JSON.stringify({
        homeRegion: 'eu-central-1',
        targets: [
          { id: 'eu-west-1', kind: 's3', region: 'eu-west-1', bucketName: 'mm-replica-eu', keyPrefix: 'm/' },
          { id: 'ap-south-1', kind: 's3', region: 'ap-south-1' },
          { id: 'onprem-dc1', kind: 'pull', pathPrefix: 'public/' },
        ],
      }),
    );
    const ctx = await resolveOpsContext(
      {
        table: 'MediaMirror-Ledger',
        originBucket: 'mm-origin',
        queueUrl: ['eu-west-1=https://sqs.eu-central-1.amazonaws.com/1/eu.fifo'],
        bucket: ['ap-south-1=mm-replica-ap'],
      },
      {},
      dir,
    );
    expect(ctx).toMatchObject({
      mode: 'aws',
      region: 'eu-central-1',
      table: 'MediaMirror-Ledger',
      originBucket: 'mm-origin',
      sqsEndpoint: undefined,
      credentials: undefined,
    });
    expect(ctx.targets.map((t) => [t.id, t.queueUrl, t.bucket, t.region, t.keyPrefix, t.pathPrefix])).toEqual(
      [
        [
          'eu-west-1',
          'https://sqs.eu-central-1.amazonaws.com/1/eu.fifo',
          'mm-replica-eu',
          'eu-west-1',
          'm/',
          undefined,
        ],
        ['ap-south-1', undefined, 'mm-replica-ap', 'ap-south-1', '', undefined],
        ['onprem-dc1', undefined, undefined, undefined, '', 'public/'],
      ],
    );
    const emulated = await resolveOpsContext(
      { table: 't' },
      { AWS_ENDPOINT_URL_SQS: 'http://localhost:4566', AWS_REGION: 'us-west-2' },
      dir,
    );
    expect(emulated.sqsEndpoint).toBe('http://localhost:4566');
    expect(emulated.region).toBe('us-west-2');
  });

  it('AWS: MIRROR_TARGETS (the functions own JSON) gives queue URLs and buckets', async () => {
    const ctx = await resolveOpsContext(
      {},
      {
        MIRROR_TABLE: 'ledger',
        MIRROR_CONFIG: 'missing.json',
        MIRROR_TARGETS: '',
      },
      dir,
    ).catch((e: Error) => e);
    expect((ctx as Error).message).toMatch(/no topology at .*missing\.json/);

    const runtime = [
      {
        id: 'eu-west-1',
        kind: 's3',
        queueUrl: 'https://q/eu.fifo',
        region: 'eu-west-1',
        bucket: 'b-eu',
        keyPrefix: '',
      },
      { id: 'onprem-dc1', kind: 'pull', queueUrl: 'https://q/dc1.fifo' },
    ];
    const fromEnv = await resolveOpsContext(
      {},
      {
        MIRROR_TABLE: 'ledger',
        MIRROR_TARGETS: JSON.stringify(runtime),
        MIRROR_INGEST_QUEUE_URL: 'https://q/in',
        MIRROR_COMPLETION_QUEUE_URL: 'https://q/completion',
      },
      join(dir, 'empty-cwd-that-has-no-config'),
    );
    expect(fromEnv.targets.map((t) => [t.id, t.queueUrl, t.bucket])).toEqual([
      ['eu-west-1', 'https://q/eu.fifo', 'b-eu'],
      ['onprem-dc1', 'https://q/dc1.fifo', undefined],
    ]);
    expect(fromEnv.ingest.queueUrl).toBe('https://q/in');
    expect(fromEnv.completion.queueUrl).toBe('https://q/completion');
    const fromFlag = await resolveOpsContext(
      { completionQueueUrl: 'https://q/flag' },
      {
        MIRROR_TABLE: 'ledger',
        MIRROR_TARGETS: JSON.stringify(runtime),
        MIRROR_COMPLETION_QUEUE_URL: 'https://q/c',
      },
      join(dir, 'empty-cwd-that-has-no-config'),
    );
    expect(fromFlag.completion).toEqual({ queueUrl: 'https://q/flag', dlqUrl: undefined });
  });

  it('flag pairs and target selection are checked', async () => {
    expect(parsePairs(['a=1', 'b=x=y'], '--queue-url')).toEqual(
      new Map([
        ['a', '1'],
        ['b', 'x=y'],
      ]),
    );
    expect(() => parsePairs(['a'], '--queue-url')).toThrow(/--queue-url expects <id>=<value>/);
    await expect(resolveOpsContext({ table: 't', queueUrl: ['nope=https://q'] }, {}, dir)).rejects.toThrow(
      /--queue-url names "nope", which is not a target/,
    );
    const ctx = await resolveOpsContext({ endpoints: 'endpoints.json' }, {}, dir);
    expect(selectTargets(ctx, undefined).map((t) => t.id)).toEqual(['eu-west-1', 'onprem-dc1']);
    expect(selectTargets(ctx, ['onprem-dc1']).map((t) => t.id)).toEqual(['onprem-dc1']);
    expect(() => selectTargets(ctx, ['x', 'y'])).toThrow(
      /unknown targets "x", "y"; the targets are: eu-west-1, onprem-dc1/,
    );
  });
});

interface FakeMessage {
  MessageId: string;
  Body: string;
  Attributes: Record<string, string>;
  MessageAttributes?: Record<string, { DataType: string; StringValue?: string; StringListValues?: string[] }>;
  receipt?: string;
  invisible: boolean;
}

/** Just enough SQS: FIFO groups block while a message of theirs is in flight, as SQS does. */
function fakeSqs(options: { failSendFor?: (body: string) => boolean } = {}) {
  const queues = new Map<string, FakeMessage[]>();
  const sent: SendMessageCommand['input'][] = [];
  const deleted: string[] = [];
  const calls: string[] = [];
  let n = 0;
  /** FIFO: a group with a message in flight gives none until it is deleted or let go. */
  const receive = (command: ReceiveMessageCommand) => {
    const q = queues.get(command.input.QueueUrl as string) ?? [];
    const busy = new Set(q.filter((m) => m.invisible).map((m) => m.Attributes.MessageGroupId));
    const out: FakeMessage[] = [];
    for (const m of q) {
      if (out.length >= (command.input.MaxNumberOfMessages ?? 1)) break;
      if (m.invisible || busy.has(m.Attributes.MessageGroupId)) continue;
      m.invisible = true;
      m.receipt = `r-${++n}`;
      out.push(m);
    }
    return { Messages: out.map((m) => ({ ...m, ReceiptHandle: m.receipt })) };
  };
  const send = (command: SendMessageCommand) => {
    if (options.failSendFor?.(command.input.MessageBody ?? '')) throw new Error('ThrottlingException');
    sent.push(command.input);
    return { MessageId: `sent-${++n}` };
  };
  const remove = (command: DeleteMessageCommand) => {
    const url = command.input.QueueUrl as string;
    deleted.push(command.input.ReceiptHandle as string);
    queues.set(
      url,
      (queues.get(url) ?? []).filter((m) => m.receipt !== command.input.ReceiptHandle),
    );
    return {};
  };
  const letGo = (command: ChangeMessageVisibilityCommand) => {
    for (const m of queues.get(command.input.QueueUrl as string) ?? []) {
      if (m.receipt === command.input.ReceiptHandle) m.invisible = false;
    }
    return {};
  };
  const moveTasks = (command: ListMessageMoveTasksCommand) => ({
    Results: [
      {
        TaskHandle: 'task-handle-1',
        Status: 'RUNNING',
        SourceArn: command.input.SourceArn,
        ApproximateNumberOfMessagesMoved: 0,
        ApproximateNumberOfMessagesToMove: 3,
      },
    ],
  });
  const queueUrlOf = (command: GetQueueUrlCommand) => {
    const { QueueOwnerAWSAccountId: account, QueueName: name } = command.input;
    return { QueueUrl: `https://sqs.eu-central-1.amazonaws.com/${account}/${name}` };
  };
  const attributes = (command: GetQueueAttributesCommand) => {
    const url = command.input.QueueUrl as string;
    const names = command.input.AttributeNames ?? [];
    if (names.includes('RedrivePolicy')) {
      const policy = {
        deadLetterTargetArn: 'arn:aws:sqs:eu-central-1:123456789012:eu-dlq.fifo',
        maxReceiveCount: 5,
      };
      return { Attributes: { RedrivePolicy: JSON.stringify(policy) } };
    }
    if (names.includes('QueueArn')) return { Attributes: { QueueArn: `arn:for:${url}` } };
    const visible = (queues.get(url) ?? []).filter((m) => !m.invisible).length;
    return { Attributes: { ApproximateNumberOfMessages: String(visible) } };
  };
  // Each command the code under test sends, by class.
  const handlers = new Map<unknown, (command: never) => unknown>([
    [ReceiveMessageCommand, receive],
    [SendMessageCommand, send],
    [DeleteMessageCommand, remove],
    [ChangeMessageVisibilityCommand, letGo],
    [GetQueueAttributesCommand, attributes],
    [GetQueueUrlCommand, queueUrlOf],
    [StartMessageMoveTaskCommand, () => ({ TaskHandle: 'task-handle-1' })],
    [ListMessageMoveTasksCommand, moveTasks],
  ]);
  const sqs = {
    queues,
    sent,
    deleted,
    calls,
    async send(command: unknown): Promise<unknown> {
      const type = (command as object).constructor;
      calls.push(type.name);
      const handler = handlers.get(type);
      if (!handler) throw new Error(`unexpected command ${type.name}`);
      return handler(command as never);
    },
  };
  return sqs;
}

const dlqUrl = 'http://127.0.0.1:4566/000000000000/mirror-target-eu-west-1-dlq.fifo';
const queueUrl = 'http://127.0.0.1:4566/000000000000/mirror-target-eu-west-1.fifo';

function parked(id: string, group: string, body = `{"path":"${id}"}`): FakeMessage {
  return {
    MessageId: id,
    Body: body,
    Attributes: {
      MessageGroupId: group,
      MessageDeduplicationId: `dedup-${id}`,
      ApproximateReceiveCount: '5',
    },
    MessageAttributes: { trace: { DataType: 'String', StringValue: 'x', StringListValues: [] } },
    invisible: false,
  };
}

describe('redrive on an emulator (moved by hand)', () => {
  it('sends each message back with its body, attributes and group but a new deduplication id, then deletes it', async () => {
    const sqs = fakeSqs();
    sqs.queues.set(dlqUrl, [parked('m1', 'g1'), parked('m2', 'g1'), parked('m3', 'g2')]);
    const result = await moveMessages(sqs, { dlqUrl, queueUrl, waitTimeSeconds: 0 });
    expect(result).toEqual({ moved: 3, failed: 0, errors: [] });
    expect(sqs.queues.get(dlqUrl)).toEqual([]);
    expect(sqs.sent.map((s) => [s.QueueUrl, s.MessageBody, s.MessageGroupId])).toEqual([
      [queueUrl, '{"path":"m1"}', 'g1'],
      [queueUrl, '{"path":"m2"}', 'g1'],
      [queueUrl, '{"path":"m3"}', 'g2'],
    ]);
    const ids = sqs.sent.map((s) => s.MessageDeduplicationId);
    expect(new Set(ids).size).toBe(3);
    expect(ids).not.toContain('dedup-m1');
    expect(ids.every((id) => /^[0-9a-f]{64}$/.test(id ?? ''))).toBe(true);
    expect(sqs.sent[0]?.MessageAttributes).toEqual({ trace: { DataType: 'String', StringValue: 'x' } });
    // Each delete follows its send.
    expect(sqs.calls.filter((c) => c !== 'ReceiveMessageCommand')).toEqual([
      'SendMessageCommand',
      'DeleteMessageCommand',
      'SendMessageCommand',
      'DeleteMessageCommand',
      'SendMessageCommand',
      'DeleteMessageCommand',
    ]);
  });

  it('a message whose send fails stays in the DLQ, visible again; the others move', async () => {
    const sqs = fakeSqs({ failSendFor: (body) => body.includes('bad') });
    sqs.queues.set(dlqUrl, [parked('bad', 'g1', '{"path":"bad"}'), parked('ok', 'g2')]);
    const result = await moveMessages(sqs, { dlqUrl, queueUrl, waitTimeSeconds: 0 });
    expect(result.moved).toBe(1);
    expect(result.failed).toBe(1);
    expect(result.errors).toEqual(['message bad: not sent back (ThrottlingException); it stays in the DLQ']);
    expect(sqs.queues.get(dlqUrl)?.map((m) => [m.MessageId, m.invisible])).toEqual([['bad', false]]);
  });

  it('runRedrive: dry run counts and moves nothing; a real run reports moved, failed and left', async () => {
    await writeFile(join(dir, 'endpoints.json'), JSON.stringify(endpoints));
    const ctx = await resolveOpsContext({ endpoints: 'endpoints.json' }, {}, dir);
    const sqs = fakeSqs();
    sqs.queues.set(dlqUrl, [parked('m1', 'g1'), parked('m2', 'g2')]);
    const dry = await runRedrive(ctx, sqs, { targetId: 'eu-west-1', dryRun: true });
    expect(dry).toMatchObject({ method: 'local', waiting: 2, moved: 0, left: 2, dryRun: true });
    expect(sqs.sent).toEqual([]);
    expect(formatRedriveResult(dry)).toBe(
      'dry run: would move 2 message(s) from mirror-target-eu-west-1-dlq.fifo back to mirror-target-eu-west-1.fifo (nothing moved)',
    );
    const real = await runRedrive(ctx, sqs, { targetId: 'eu-west-1', dryRun: false });
    expect(real).toMatchObject({ method: 'local', waiting: 2, moved: 2, failed: 0, left: 0 });
    expect(formatRedriveResult(real)).toBe(
      'moved 2 message(s) from mirror-target-eu-west-1-dlq.fifo back to mirror-target-eu-west-1.fifo; 0 failed; 0 left in the DLQ',
    );
    expect(redriveFailed(real)).toBeUndefined();
    // An error's text (a message id, a service's words) reaches the terminal escaped.
    expect(formatRedriveResult({ ...real, errors: ['message \x1b[2Kx: not sent back'] })).toContain(
      '  message \\x1b[2Kx: not sent back',
    );
    const empty = await runRedrive(ctx, sqs, { targetId: 'eu-west-1', dryRun: false });
    expect(formatRedriveResult(empty)).toBe('nothing to redrive: mirror-target-eu-west-1-dlq.fifo is empty');
    await expect(runRedrive(ctx, sqs, { dryRun: true })).rejects.toThrow(
      /redrive needs exactly one of --target <id>, --ingest or --completion$/,
    );
    await expect(runRedrive(ctx, sqs, { targetId: 'x', ingest: true, dryRun: true })).rejects.toThrow(
      /exactly one/,
    );
    await expect(runRedrive(ctx, sqs, { ingest: true, completion: true, dryRun: true })).rejects.toThrow(
      /exactly one/,
    );
    await expect(
      runRedrive(ctx, sqs, { targetId: 'eu-west-1', completion: true, dryRun: true }),
    ).rejects.toThrow(/exactly one/);
    const completion = await runRedrive(ctx, sqs, { completion: true, dryRun: true });
    expect(completion).toMatchObject({
      queueOf: 'completion',
      queue: endpoints.completion.queue,
      dlq: endpoints.completion.dlq,
    });
    const ingest = await runRedrive(ctx, sqs, { ingest: true, dryRun: true });
    expect(ingest).toMatchObject({
      queueOf: 'ingest',
      queue: endpoints.ingest.queue,
      dlq: endpoints.ingest.dlq,
    });
  });

  it('deduplication ids differ per run and per message', () => {
    expect(redriveDeduplicationId('a', 'run1')).not.toBe(redriveDeduplicationId('a', 'run2'));
    expect(redriveDeduplicationId('a', 'run1')).not.toBe(redriveDeduplicationId('b', 'run1'));
  });
});

describe('redrive on AWS (a message move task)', () => {
  const aws: OpsContext = {
    mode: 'aws',
    source: 'test',
    region: 'eu-central-1',
    table: 'ledger',
    originBucket: undefined,
    targets: [
      {
        id: 'eu-west-1',
        kind: 's3',
        queueUrl: 'https://sqs.eu-central-1.amazonaws.com/123456789012/eu.fifo',
        dlqUrl: undefined,
        bucket: undefined,
        region: 'eu-west-1',
        keyPrefix: '',
        pathPrefix: undefined,
        dryRun: false,
      },
    ],
    ingest: { queueUrl: undefined, dlqUrl: undefined },
    completion: { queueUrl: undefined, dlqUrl: undefined },
    sqsEndpoint: undefined,
    s3Endpoint: undefined,
    dynamodbEndpoint: undefined,
    forcePathStyle: false,
    credentials: undefined,
  };

  it('finds the DLQ from the redrive policy and starts StartMessageMoveTask with it as the source', async () => {
    const sqs = fakeSqs();
    const awsDlq = 'https://sqs.eu-central-1.amazonaws.com/123456789012/eu-dlq.fifo';
    sqs.queues.set(awsDlq, [parked('m1', 'g'), parked('m2', 'g'), parked('m3', 'h')]);
    const result = await runRedrive(aws, sqs, { targetId: 'eu-west-1', dryRun: false });
    expect(result).toMatchObject({
      method: 'aws',
      dlq: awsDlq,
      waiting: 3,
      taskHandle: 'task-handle-1',
      taskStatus: 'RUNNING',
      moved: 0,
      left: 3,
    });
    expect(sqs.calls).toContain('StartMessageMoveTaskCommand');
    expect(sqs.calls).not.toContain('SendMessageCommand');
    expect(formatRedriveResult(result)).toBe(
      [
        'started message move task from eu-dlq.fifo back to eu.fifo: ~3 message(s)',
        'task     task-handle-1',
        'status   RUNNING: 0 moved, 3 to go',
        'follow it with --wait, or: aws sqs list-message-move-tasks --source-arn <dlq arn>',
      ].join('\n'),
    );
    const dry = await runRedrive(aws, sqs, { targetId: 'eu-west-1', dryRun: true });
    expect(dry).toMatchObject({ method: 'aws', waiting: 3, moved: 0 });
    await expect(runRedrive(aws, sqs, { ingest: true, dryRun: true })).rejects.toThrow(/--ingest-queue-url/);
    await expect(runRedrive(aws, sqs, { completion: true, dryRun: true })).rejects.toThrow(
      'no completion queue URL: pass --completion-queue-url (or MIRROR_COMPLETION_QUEUE_URL)',
    );
  });
});

describe('reconcile output', () => {
  it('a table per target; dry run says nothing changed', () => {
    const result = {
      mode: 'local' as const,
      heads: 12,
      dryRun: true,
      pages: 1,
      cycleComplete: true,
      seconds: 0.42,
      uncheckedTargets: ['ap-south-1'],
      targets: {
        'eu-west-1': { resent: 3, missing: 1, altered: 1 },
        'onprem-dc1': { resent: 0, missing: 0, altered: 0 },
      },
      foreign: {},
    };
    expect(formatReconcileResult(result)).toBe(
      [
        'reconcile (dry run: nothing changed): 12 path(s) checked in 0.4 s, would re-send 3 version(s)',
        '',
        'TARGET      TO RESEND  MISSING  ALTERED  BEHIND',
        'eu-west-1   3          1        1        1',
        'onprem-dc1  0          0        0        0',
        '',
        'objects not checked (bucket unknown, pass --bucket <id>=<name>): ap-south-1',
      ].join('\n'),
    );
    expect(formatReconcileResult({ ...result, dryRun: false, uncheckedTargets: [] }).split('\n')[2]).toBe(
      'TARGET      RESENT  MISSING  ALTERED  BEHIND',
    );
  });

  it('names the objects found in a replica bucket that the mirror does not hold, and what was done', () => {
    const result = {
      mode: 'local' as const,
      heads: 2,
      dryRun: false,
      pages: 1,
      cycleComplete: true,
      seconds: 0.2,
      uncheckedTargets: [],
      targets: { 'eu-west-1': { resent: 1, missing: 0, altered: 0 } },
      foreign: {
        'eu-west-1': {
          listed: 4,
          foreign: 3,
          deleted: 1,
          complete: true,
          sample: [
            { key: 'm/gone.jpg', path: 'gone.jpg', reason: 'deleted' as const },
            { key: 'm/stray.jpg', path: 'stray.jpg', reason: 'unknown' as const },
          ],
        },
      },
    };
    expect(formatReconcileResult(result).split('\n').slice(4)).toEqual([
      '',
      'objects in replica buckets the mirror holds no live file for (foreign):',
      'TARGET     LISTED  FOREIGN  DELETES RE-SENT',
      'eu-west-1  4       3        1',
      '  eu-west-1: m/gone.jpg (deleted in the mirror: delete re-sent)',
      '  eu-west-1: m/stray.jpg (unknown to the mirror: left alone)',
      '  eu-west-1: 1 more not shown',
    ]);
    const dry = formatReconcileResult({
      ...result,
      dryRun: true,
      foreign: { 'eu-west-1': { ...result.foreign['eu-west-1'], complete: false } },
    });
    expect(dry).toMatch(/DELETES TO RE-SEND/);
    expect(dry).toMatch(/m\/gone\.jpg \(deleted in the mirror: delete to re-send\)/);
    expect(dry).toMatch(/eu-west-1: listing not complete \(stopped at the deadline\)/);
  });
});
