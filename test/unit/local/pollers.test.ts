/**
 * The local stack sizes its functions and pollers to the machine's cores, and an event-source
 * mapping with several pollers keeps that many batches in flight at once.
 */
import { ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsEventSourceMapping } from '../../../local/event-source-mapping.ts';
import { localSizing } from '../../../local/sizing.ts';

/** A queue that hands out one message per receive, `total` in all, then long-polls empty. */
function fakeQueue(total: number) {
  let sent = 0;
  const sqs = {
    send: async (command: unknown, options?: { abortSignal?: AbortSignal }) => {
      if (!(command instanceof ReceiveMessageCommand)) return { Failed: [] };
      if (sent < total) {
        sent++;
        return { Messages: [{ MessageId: `m${sent}`, ReceiptHandle: `r${sent}`, Body: '{}' }] };
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 50);
        options?.abortSignal?.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
      return { Messages: [] };
    },
  } as unknown as SQSClient;
  return sqs;
}

/** A function whose invocations wait until released; it records how many run at once. */
function heldFunction() {
  const held: Array<() => void> = [];
  const seen = { inFlight: 0, max: 0 };
  return {
    seen,
    release: () => {
      for (const r of held.splice(0)) r();
    },
    fn: {
      name: 'ingest',
      invoke: async () => {
        seen.inFlight++;
        seen.max = Math.max(seen.max, seen.inFlight);
        await new Promise<void>((r) => held.push(r));
        seen.inFlight--;
        return { batchItemFailures: [] };
      },
    },
  };
}

const queue = {
  name: 'q',
  url: 'http://127.0.0.1:9/000000000000/q',
  arn: 'arn:aws:sqs:us-east-1:000000000000:q',
};

async function inFlightWith(pollers: number | undefined): Promise<number> {
  const { fn, seen, release } = heldFunction();
  const mapping = new SqsEventSourceMapping({
    sqs: fakeQueue(4),
    queue,
    fn,
    region: 'us-east-1',
    ...(pollers === undefined ? {} : { pollers }),
    onError: () => {},
  });
  mapping.start();
  await new Promise((r) => setTimeout(r, 100));
  const max = seen.max;
  const stopped = mapping.stop();
  release();
  await new Promise((r) => setTimeout(r, 10));
  release();
  await stopped;
  return max;
}

describe('event-source mapping pollers', () => {
  it('one poller (the default) has one batch in flight', async () => {
    expect(await inFlightWith(undefined)).toBe(1);
  });

  it('three pollers have three batches in flight at once', async () => {
    expect(await inFlightWith(3)).toBe(3);
  });
});

describe('localSizing', () => {
  it('on 2 cores: 2 API environments, 2 ingest pollers with an environment each, 1 per replicate target', () => {
    expect(localSizing(2)).toEqual({
      api: 2,
      ingest: { pollers: 2, environments: 2 },
      replicate: { pollers: 1, environments: 1 },
    });
  });

  it('never less than one poller, at least 2 API environments; capped at Lambda-like sizes on large machines', () => {
    expect(localSizing(1)).toMatchObject({ api: 2, ingest: { pollers: 1, environments: 1 } });
    expect(localSizing(64)).toMatchObject({ api: 10, ingest: { pollers: 5, environments: 5 } });
  });
});
