/**
 * The commit protocol against its model, with crashes at any ledger write and every interleaving
 * fast-check's scheduler picks (test/support/commit-model.ts), on InMemoryLedger: many runs.
 */
import { expect, it } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { checkCommitProtocol } from '../../support/commit-model.js';

it('commits under crashes and interleavings keep every invariant (InMemoryLedger, 300 runs)', async () => {
  const stats = await checkCommitProtocol({ makeLedger: async () => new InMemoryLedger(), numRuns: 300 });
  // The property did what it says: crashes were injected and versions committed across the runs.
  expect(stats.runs).toBeGreaterThanOrEqual(300);
  expect(stats.crashesInjected).toBeGreaterThan(100);
  expect(stats.versionsCommitted).toBeGreaterThan(300);
  expect(stats.uploadsRejected).toBeGreaterThan(0);
  console.info(`commit model (in memory): ${JSON.stringify(stats)}`);
});
