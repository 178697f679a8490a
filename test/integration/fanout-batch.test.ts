/**
 * The fan-out of an ingest batch, against the local SQS (fauxqs behind its gate): the records of
 * one batch commit side by side, and their messages go to each target's FIFO queue in
 * SendMessageBatch requests, every message arriving once with its group and deduplication id;
 * two versions of one path in the batch arrive in version order.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { APIGatewayProxyStructuredResultV2, SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deduplicationId, messageGroupId } from '../../functions/core/shards.js';
import { createIngestHandler } from '../../functions/handlers/ingest-handler.js';
import { httpEvent, lambdaContext } from '../support/api-events.js';
import { makeWorld, sha256Hex, testTelemetry, type World, worldApi } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';
import { standardRecord } from '../support/sqs-events.js';

let emulators: TestEmulators;
let world: World;
const commands: string[] = [];
/** When the ingest last handed a message to the fan-out (see the gate below). */
let lastSendAt = 0;

beforeAll(async () => {
  emulators = await startEmulators();
  world = await makeWorld(emulators);
  emulators.sqs.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push(String(context.commandName));
      // A request to SQS answers in a few milliseconds on loopback, while the batch's commits
      // finish one after another (they contend for the same feed shard): whether a send found
      // a request in flight was a matter of timing, and on a loaded machine none did (36 single
      // requests). Holding each request until no send has been made for a while stands in for
      // a network round trip deterministically: the batcher's contract is that sends made while
      // a request is in flight go together in the next one.
      if (context.commandName === 'SendMessageBatchCommand')
        while (Date.now() - lastSendAt < 300) await sleep(25);
      return next(args);
    },
    { step: 'initialize', name: 'countCommands' },
  );
});
afterAll(async () => {
  await emulators?.stop();
});

const json = (result: APIGatewayProxyStructuredResultV2) => JSON.parse(String(result.body ?? '{}'));

/** Claims `path` through the API and PUTs the bytes to its URL; the S3 event of them, as an SQS record. */
async function claimAndPut(path: string, bytes: Buffer): Promise<SQSRecord> {
  const api = worldApi(world);
  const created = await api(
    httpEvent('POST', '/v1/uploads', {
      body: { path, size: bytes.length, sha256: sha256Hex(bytes), contentType: 'text/plain' },
    }),
    lambdaContext('api'),
  );
  expect(created.statusCode, String(created.body)).toBe(201);
  const { url, headers } = json(created).upload as { url: string; headers: Record<string, string> };
  const { 'content-length': _length, ...rest } = headers;
  const put = await fetch(url, { method: 'PUT', headers: rest, body: new Uint8Array(bytes) });
  expect(put.status).toBe(200);
  const body = JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: 'us-east-1',
        eventTime: new Date().toISOString(),
        eventName: 'ObjectCreated:Put',
        s3: {
          s3SchemaVersion: '1.0',
          bucket: { name: world.originBucket, arn: `arn:aws:s3:::${world.originBucket}` },
          object: {
            key: `blobs/${sha256Hex(bytes)}`,
            size: bytes.length,
            eTag: put.headers.get('etag')?.replaceAll('"', ''),
            versionId: put.headers.get('x-amz-version-id') ?? undefined,
          },
        },
      },
    ],
  });
  return standardRecord(body, { messageId: randomUUID() });
}

describe('fan-out of an ingest batch', () => {
  it("a multi-record ingest batch reaches every target in SendMessageBatch requests, a path's versions in order", async () => {
    const paths = Array.from({ length: 10 }, (_, i) => `public/batch/${i}.txt`);
    const records = [];
    for (const path of paths) records.push(await claimAndPut(path, Buffer.from(`${path} ${randomUUID()}`)));
    // Two versions of one path in the same batch: whichever commits first is version 1.
    records.push(await claimAndPut('public/batch/same.txt', Buffer.from(`first ${randomUUID()}`)));
    records.push(await claimAndPut('public/batch/same.txt', Buffer.from(`second ${randomUUID()}`)));
    commands.length = 0;
    const event: SQSEvent = { Records: records };
    const fanout = world.deps.fanout;
    const countedFanout: typeof fanout = {
      send: (message, options) => {
        lastSendAt = Date.now();
        return fanout.send(message, options);
      },
    };
    const out = await createIngestHandler({
      ...world.deps,
      fanout: countedFanout,
      telemetry: testTelemetry(),
    })(event, lambdaContext('ingest'));
    expect(out.batchItemFailures).toEqual([]);
    // 12 versions to 3 targets (all three take public/): 36 messages. Under the gate, each queue
    // takes the first alone and the other 11 as 10 + 1 (9 requests, measured under load too);
    // sent one at a time they would be 36.
    expect(commands.filter((c) => c === 'SendMessageCommand')).toEqual([]);
    const batches = commands.filter((c) => c === 'SendMessageBatchCommand').length;
    expect(batches).toBeGreaterThanOrEqual(3);
    expect(batches).toBeLessThanOrEqual(12);

    for (const target of world.targets) {
      const messages = await emulators.drainQueue(target.queueUrl);
      const bodies = messages.map((m) => JSON.parse(m.Body ?? '{}') as { path: string; version: number });
      expect(bodies.map((b) => `${b.path}@${b.version}`).sort(), target.id).toEqual(
        [...paths.map((p) => `${p}@1`), 'public/batch/same.txt@1', 'public/batch/same.txt@2'].sort(),
      );
      for (const [i, m] of messages.entries()) {
        const b = bodies[i] as { path: string; version: number };
        expect(m.Attributes?.MessageGroupId).toBe(messageGroupId(b.path));
        expect(m.Attributes?.MessageDeduplicationId).toBe(deduplicationId(b.path, b.version, undefined));
      }
      expect(bodies.filter((b) => b.path === 'public/batch/same.txt').map((b) => b.version)).toEqual([1, 2]);
    }
  });
});
