/**
 * A claim (POST /v1/uploads) reads the path's head alongside the folder rule's reads: one round
 * trip to the ledger before the claim is written, not two (issue 10, the one-new-file latency).
 * The folder rule's read here answers only once the head has been asked: sequential code never
 * gets there.
 */
import { describe, expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import type { Ledger } from '../../../functions/core/ports.js';
import { httpEvent } from '../../support/api-events.js';
import { apiOverLedger, randomBytes, sha256Hex } from '../../support/domain.js';

function claimApi() {
  const inner = new InMemoryLedger();
  const order: string[] = [];
  let headAsked: () => void = () => undefined;
  const asked = new Promise<void>((resolve) => {
    headAsked = resolve;
  });
  const ledger = new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      if (name === 'getHead')
        return (...args: unknown[]) => {
          order.push('getHead');
          headAsked();
          return value.apply(target, args);
        };
      if (name === 'hasLiveFileUnder')
        return async (...args: unknown[]) => {
          const together = await Promise.race([
            asked.then(() => true),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000)),
          ]);
          order.push(together ? 'folder rule answered with the head asked' : 'folder rule answered alone');
          return value.apply(target, args);
        };
      return value.bind(target);
    },
  }) as unknown as Ledger;
  // A pull target: the folder/file rule applies, so the claim reads the ledger for it.
  const answer = apiOverLedger(ledger, [{ id: 'dc', kind: 'pull' }]);
  const claim = (body: Record<string, unknown>) => answer(httpEvent('POST', '/v1/uploads', { body }));
  return { claim, order };
}

describe('a claim reads the ledger side by side', () => {
  it("asks the path's head while the folder rule's reads are in flight, and asks it once", async () => {
    const { claim, order } = claimApi();
    const bytes = randomBytes(300);
    const body = { path: 'media/a.png', size: 300, sha256: sha256Hex(bytes), contentType: 'image/png' };
    const answer = await claim(body);
    expect(answer.status).toBe(201);
    expect(order).toEqual(['getHead', 'folder rule answered with the head asked']);
  });

  it('with ifVersion too, the head is read once', async () => {
    const { claim, order } = claimApi();
    const bytes = randomBytes(200);
    const body = {
      path: 'media/b.png',
      size: 200,
      sha256: sha256Hex(bytes),
      contentType: 'image/png',
      ifVersion: 0,
    };
    expect((await claim(body)).status).toBe(201);
    expect(order.filter((o) => o === 'getHead')).toHaveLength(1);
  });
});
