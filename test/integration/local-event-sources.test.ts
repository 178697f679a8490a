/**
 * The local event-source mappings (local/event-source-mapping.ts) against the local SQS, where they
 * must do what Lambda's SQS event source does: which handler answers delete a batch, which leave
 * it for redelivery (local/README.md, "Lambda SQS event source"); and the local stack's mappings
 * and queues are set as the deployed ones (contracts/event-sources.ts).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_SOURCE_BATCH_SIZE, visibilityTimeoutFor } from '../../contracts/event-sources.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { SqsEventSourceMapping } from '../../local/event-source-mapping.ts';
import { LOCAL_NAMES } from '../../local/resources.ts';
import { QUEUE_FUNCTION_TIMEOUT_SECONDS, type Sandbox } from '../../local/sandbox.ts';
import { useLocalSqs } from '../support/local-sqs.ts';
import { startTestSandbox } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';
import type { RecordedInvocation } from './fixtures/recording-handler.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/recording-handler.ts', import.meta.url));

const REGION = 'us-east-1';
const localSqs = useLocalSqs(REGION);

async function standardQueue(name: string, visibilityTimeout: number) {
  const created = await localSqs.client.send(
    new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: String(visibilityTimeout) } }),
  );
  const url = created.QueueUrl as string;
  const arn = (
    await localSqs.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))
  ).Attributes?.QueueArn as string;
  return { name, url, arn };
}

describe('the local SQS event source', () => {
  it.each([
    ['a string', 'ok'],
    ['an array', []],
    ['a number', 1],
  ])('a handler answer that is %s fails the whole batch: the message comes back', async (_, answer) => {
    const queue = await standardQueue(`non-object-${typeof answer}-${Array.isArray(answer)}`, 1);
    await localSqs.client.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: 'm' }));
    const receiveCounts: string[] = [];
    const mapping = new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue,
      region: REGION,
      waitTimeSeconds: 1,
      onError: () => {},
      fn: {
        name: 'answers-non-object',
        invoke: async (event) => {
          receiveCounts.push(...(event as SQSEvent).Records.map((r) => r.attributes.ApproximateReceiveCount));
          return answer;
        },
      },
    });
    mapping.start();
    try {
      // Deleted after the first invocation, it would never be received a second time.
      await waitFor('the message received again', () => receiveCounts.length >= 2, 8_000);
    } finally {
      await mapping.stop();
    }
    expect(receiveCounts.slice(0, 2)).toEqual(['1', '2']);
    expect(mapping.stats.failedRecords).toBeGreaterThanOrEqual(1);
  });
});

describe('a local event-source mapping and its queue', () => {
  const fn = (timeoutSeconds: number) => ({
    name: 'slow',
    timeoutSeconds,
    invoke: async () => ({ batchItemFailures: [] }),
  });
  const mappingOf = async (visibilityTimeout: number, timeoutSeconds: number) =>
    new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue: await standardQueue(`visibility-${visibilityTimeout}-${timeoutSeconds}`, visibilityTimeout),
      region: REGION,
      onError: () => {},
      fn: fn(timeoutSeconds),
    });

  it("refuses to start when the queue's visibility timeout is below the function's timeout, as Lambda refuses to create it", async () => {
    const mapping = await mappingOf(5, 10);
    await expect(mapping.start()).rejects.toThrow(
      'Queue visibility timeout: 5 seconds is less than Function timeout: 10 seconds',
    );
    await mapping.stop();
  });

  it('starts when the visibility timeout is the function timeout or more', async () => {
    const mapping = await mappingOf(10, 10);
    await expect(mapping.start()).resolves.toBeUndefined();
    await mapping.stop();
  });
});

describe('the local stack, as deployed', () => {
  let dir: string;
  let log: string;
  let sandbox: Sandbox;
  let sqs: SQSClient;
  const queueUrl = async (name: string) =>
    (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl as string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mirror-event-sources-'));
    log = join(dir, 'invocations.jsonl');
    sandbox = await startTestSandbox(join(dir, 'data'), {
      topology: parseTopology({
        homeRegion: REGION,
        targets: [{ id: 'alpha', kind: 's3', region: 'eu-west-1' }],
      }),
      env: {},
      handlers: { 'complete-multipart': FIXTURE },
      functionEnv: { FIXTURE_LOG: log },
      agents: false,
      schedules: false,
    });
    const e = sandbox.endpoints;
    sqs = new SQSClient({ region: REGION, endpoint: e.sqs.endpoint, credentials: { ...e.s3.credentials } });
  });
  afterAll(async () => {
    sqs?.destroy();
    await sandbox?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("the ingest, completion and S3 target queues' visibility timeout is 6x their function's timeout", async () => {
    const deployedRule = String(visibilityTimeoutFor(QUEUE_FUNCTION_TIMEOUT_SECONDS));
    for (const name of [
      LOCAL_NAMES.ingestQueue,
      LOCAL_NAMES.completionQueue,
      LOCAL_NAMES.targetQueue('alpha'),
    ]) {
      const out = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: await queueUrl(name),
          AttributeNames: ['VisibilityTimeout'],
        }),
      );
      expect(out.Attributes?.VisibilityTimeout, name).toBe(deployedRule);
    }
    // The function runs with that timeout: a completion sees at most its 30 s left.
    const url = await queueUrl(LOCAL_NAMES.completionQueue);
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: '{"timeout":true}' }));
    const invocation = await waitFor('the completion', async () => {
      const lines = (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '');
      return lines
        .map((l) => JSON.parse(l) as RecordedInvocation)
        .find((i) => JSON.stringify(i.event).includes('timeout'));
    });
    expect(invocation.remainingMs).toBeLessThanOrEqual(QUEUE_FUNCTION_TIMEOUT_SECONDS * 1000);
    expect(invocation.remainingMs).toBeGreaterThan((QUEUE_FUNCTION_TIMEOUT_SECONDS - 10) * 1000);
  });

  it('the completion mapping takes one message per invocation, as deployed', async () => {
    expect(EVENT_SOURCE_BATCH_SIZE.completion).toBe(1);
    const url = await queueUrl(LOCAL_NAMES.completionQueue);
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: ['1', '2', '3'].map((id) => ({ Id: id, MessageBody: JSON.stringify({ id }) })),
      }),
    );
    const stats = () => sandbox.stats()['complete-multipart'];
    await waitFor('three completions', () => (stats()?.records ?? 0) >= 3);
    expect(stats()?.batches).toBe(stats()?.records);
  });
});
