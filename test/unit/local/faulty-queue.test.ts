/**
 * Delivery faults on a pull target's queue (local/delivery-faults.ts faultyQueue): the agent polls
 * its queue itself, so its faults sit between the queue and the agent's receive.
 */
import { describe, expect, it } from 'vitest';
import type { QueueMessage, QueuePort } from '../../../agent/ports.ts';
import { type DeliveryFaultRates, DeliveryFaults, faultyQueue } from '../../../local/delivery-faults.ts';

const message = (id: string): QueueMessage => ({
  messageId: id,
  receiptHandle: `r-${id}`,
  body: id,
  receiveCount: 1,
  groupId: 'g',
});

/** A queue handing out the given batches in turn, recording deletes. */
function scripted(batches: string[][]): QueuePort & { deleted: string[] } {
  const deleted: string[] = [];
  return {
    deleted,
    receive: async () => (batches.shift() ?? []).map(message),
    delete: async (handle) => void deleted.push(handle),
    setVisibility: async () => undefined,
    backlog: async () => 0,
  };
}

const receive = (q: QueuePort) =>
  q
    .receive({ max: 10, waitSeconds: 0, visibilitySeconds: 30, signal: new AbortController().signal })
    .then((ms) => ms.map((m) => m.messageId));

/** Every delivery gets `fate`: the random source is pinned. */
const always = (rates: DeliveryFaultRates) => new DeliveryFaults('test', rates, () => 0);

describe('faultyQueue (the pull target queue)', () => {
  it('drop: the message is deleted from the queue and the agent never sees it', async () => {
    const inner = scripted([['a', 'b']]);
    const q = faultyQueue(inner, always({ drop: 1 }), 'agent-x');
    expect(await receive(q)).toEqual([]);
    expect(inner.deleted).toEqual(['r-a', 'r-b']);
  });

  it('duplicate: handed over now and again at the next receive', async () => {
    const q = faultyQueue(scripted([['a'], []]), always({ duplicate: 1 }), 'agent-x');
    expect(await receive(q)).toEqual(['a']);
    expect(await receive(q)).toEqual(['a']);
  });

  it('reorder: held back until after the next batch', async () => {
    const faults = always({ reorder: 1 });
    const q = faultyQueue(scripted([['a'], ['b'], []]), faults, 'agent-x');
    expect(await receive(q)).toEqual([]);
    faults.set({});
    expect(await receive(q)).toEqual(['b', 'a']);
  });

  it('delay: handed over at a receive after its delay', async () => {
    const q = faultyQueue(
      scripted([['a'], [], []]),
      new DeliveryFaults('test', { delay: 1, maxDelayMs: 50 }, () => 0.99),
      'agent-x',
    );
    expect(await receive(q)).toEqual([]);
    await new Promise((r) => setTimeout(r, 80));
    expect(await receive(q)).toEqual(['a']);
  });

  it('only other subjects named: the agent’s messages go through untouched, counted as delivered', async () => {
    const faults = always({ drop: 1, only: ['replicate-eu-west-1'] });
    const q = faultyQueue(scripted([['a']]), faults, 'agent-x');
    expect(await receive(q)).toEqual(['a']);
    expect(faults.counts).toMatchObject({ deliver: 1, drop: 0 });
  });
});
