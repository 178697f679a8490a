/**
 * SqsFanout coalesces the sends made together (an ingest batch's records committed side by side)
 * into one SendMessageBatch per queue, ten entries at most, and settles each caller by its own
 * entry. Requests are answered by a middleware before they leave the client, with the shapes of
 * SQS's SendMessageBatchResult (Successful: Id, MessageId, MD5OfMessageBody, SequenceNumber;
 * Failed: Id, SenderFault, Code, Message), so what is asserted is what SQS would receive.
 */
import {
  type SendMessageBatchCommandInput,
  type SendMessageBatchResult,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsBatchEntryError } from '../../../common/sqs-batcher.js';
import { SqsFanout } from '../../../functions/adapters/sqs-fanout.js';
import { replicationMessage } from '../../../functions/core/commit.js';
import { deduplicationId, messageGroupId } from '../../../functions/core/shards.js';

const TARGETS = ['onprem-dc1', 's3-a', 's3-b'].map((id) => ({
  id,
  queueUrl: `https://sqs.example/${id}.fifo`,
}));

type Answer = (input: SendMessageBatchCommandInput) => Promise<SendMessageBatchResult>;

const allSucceed: Answer = async (input) => ({
  Successful: (input.Entries ?? []).map((e, i) => ({
    Id: e.Id,
    MessageId: `m-${i}`,
    MD5OfMessageBody: '0'.repeat(32),
    SequenceNumber: String(10_000 + i),
  })),
  Failed: [],
});

function client(answer: Answer = allSucceed) {
  const sqs = new SQSClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const sent: { commandName: string; input: SendMessageBatchCommandInput }[] = [];
  sqs.middlewareStack.add(
    (_next, context) => async (args) => {
      const input = args.input as SendMessageBatchCommandInput;
      sent.push({ commandName: String(context.commandName), input });
      const output = await answer(input);
      return { output: { $metadata: {}, ...output }, response: {} } as never;
    },
    { step: 'initialize', name: 'answer' },
  );
  return { sqs, sent };
}

const version = (path: string, n: number) => ({
  path,
  version: n,
  sha256: 'ab'.repeat(32),
  size: 10,
  contentType: 'text/plain',
  deleted: false,
  committedAt: '2026-12-02T12:00:00.000Z',
});

const bodyOf = (entry: { MessageBody?: string | undefined }) =>
  JSON.parse(entry.MessageBody ?? '{}') as { path: string; version: number; targetId: string };

describe('SqsFanout batches its sends', () => {
  it('N sends made together become ceil(N/10) SendMessageBatch calls per queue, each entry with its group and dedup id', async () => {
    const { sqs, sent } = client();
    const fanout = new SqsFanout(sqs, TARGETS);
    const paths = Array.from({ length: 23 }, (_, i) => `dir/file-${i}.txt`);
    await Promise.all(
      paths.flatMap((p) => TARGETS.map((t) => fanout.send(replicationMessage(t.id, version(p, 1))))),
    );
    expect(sent.every((s) => s.commandName === 'SendMessageBatchCommand')).toBe(true);
    // 23 per queue: 10, 10, 3, for each of the three queues.
    expect(sent).toHaveLength(3 * Math.ceil(23 / 10));
    for (const target of TARGETS) {
      const requests = sent.filter((s) => s.input.QueueUrl === target.queueUrl);
      expect(requests.map((r) => r.input.Entries?.length)).toEqual([10, 10, 3]);
      const entries = requests.flatMap((r) => r.input.Entries ?? []);
      // In the order they were sent, each with its path's group and its version's dedup id.
      expect(entries.map((e) => bodyOf(e).path)).toEqual(paths);
      expect(entries.every((e) => bodyOf(e).targetId === target.id)).toBe(true);
      for (const e of entries) {
        expect(e.MessageGroupId).toBe(messageGroupId(bodyOf(e).path));
        expect(e.MessageDeduplicationId).toBe(deduplicationId(bodyOf(e).path, 1, undefined));
      }
      for (const r of requests) {
        const ids = (r.input.Entries ?? []).map((e) => e.Id);
        expect(new Set(ids).size).toBe(ids.length);
      }
    }
  });

  it('a resend keeps its distinct dedup id inside a batch', async () => {
    const { sqs, sent } = client();
    const fanout = new SqsFanout(sqs, TARGETS.slice(0, 1));
    await Promise.all([
      fanout.send(replicationMessage('onprem-dc1', version('a', 1))),
      fanout.send(replicationMessage('onprem-dc1', version('b', 1)), { resend: 'outbox' }),
    ]);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.input.Entries?.map((e) => e.MessageDeduplicationId)).toEqual([
      deduplicationId('a', 1, undefined),
      deduplicationId('b', 1, 'outbox'),
    ]);
  });

  it('an entry SQS lists as Failed rejects exactly its caller, with SQS code', async () => {
    const { sqs } = client(async (input) => {
      const entries = input.Entries ?? [];
      const bad = entries.filter((e) => bodyOf(e).path === 'bad.txt');
      return {
        Successful: entries
          .filter((e) => !bad.includes(e))
          .map((e) => ({ Id: e.Id, MessageId: `m-${e.Id}`, MD5OfMessageBody: '0'.repeat(32) })),
        Failed: bad.map((e) => ({
          Id: e.Id,
          SenderFault: true,
          Code: 'InvalidMessageContents',
          Message: 'The message contains characters outside the allowed set.',
        })),
      };
    });
    const fanout = new SqsFanout(sqs, TARGETS.slice(0, 1));
    const results = await Promise.allSettled(
      ['a.txt', 'bad.txt', 'c.txt'].map((p) => fanout.send(replicationMessage('onprem-dc1', version(p, 1)))),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const error = (results[1] as PromiseRejectedResult).reason;
    expect(error).toBeInstanceOf(SqsBatchEntryError);
    expect(error).toMatchObject({ code: 'InvalidMessageContents', senderFault: true, $fault: 'client' });
  });

  it('an entry in neither list is not counted as sent', async () => {
    const { sqs } = client(async (input) => ({
      Successful: (input.Entries ?? [])
        .slice(1)
        .map((e) => ({ Id: e.Id, MessageId: 'm', MD5OfMessageBody: '' })),
      Failed: [],
    }));
    const fanout = new SqsFanout(sqs, TARGETS.slice(0, 1));
    const results = await Promise.allSettled(
      ['a', 'b'].map((p) => fanout.send(replicationMessage('onprem-dc1', version(p, 1)))),
    );
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
  });

  it('a request that throws rejects every caller in it, and only those', async () => {
    let calls = 0;
    const { sqs, sent } = client(async (input) => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('Service Unavailable'), { name: 'ServiceUnavailable' });
      return allSucceed(input);
    });
    const fanout = new SqsFanout(sqs, TARGETS.slice(0, 1));
    const first = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        fanout.send(replicationMessage('onprem-dc1', version(`p${i}`, 1))),
      ),
    );
    // The first request (ten entries) failed whole; the second (two) went through.
    expect(sent.map((s) => s.input.Entries?.length)).toEqual([10, 2]);
    expect(first.map((r) => r.status)).toEqual([...Array(10).fill('rejected'), 'fulfilled', 'fulfilled']);
    expect((first[0] as PromiseRejectedResult).reason).toMatchObject({ name: 'ServiceUnavailable' });
  });

  it("keeps a path's versions in order: in one batch in version order, or the later one after the earlier is answered", async () => {
    const order: string[] = [];
    let release: (() => void) | undefined;
    const { sqs, sent } = client(async (input) => {
      const entries = input.Entries ?? [];
      order.push(`start ${entries.map((e) => `${bodyOf(e).path}@${bodyOf(e).version}`).join(',')}`);
      if (sent.length === 1) await new Promise<void>((resolve) => (release = resolve));
      order.push('answered');
      return allSucceed(input);
    });
    const fanout = new SqsFanout(sqs, TARGETS.slice(0, 1));
    const v1 = fanout.send(replicationMessage('onprem-dc1', version('x', 1)));
    const v2 = fanout.send(replicationMessage('onprem-dc1', version('x', 2)));
    await new Promise((resolve) => setImmediate(resolve));
    // v3 is sent while the request holding v1 and v2 is still in flight: it waits for its answer.
    const v3 = fanout.send(replicationMessage('onprem-dc1', version('x', 3)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(order).toEqual(['start x@1,x@2']);
    release?.();
    await Promise.all([v1, v2, v3]);
    expect(order).toEqual(['start x@1,x@2', 'answered', 'start x@3', 'answered']);
  });
});
