/**
 * The commit protocol against its model, with crashes at any ledger write and scheduler
 * interleavings (test/support/commit-model.ts), on DynamoLedger and the gated DynamoDB: a few
 * runs (each a fresh table; the emulator serialises transactions).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DynamoLedger } from '../../functions/adapters/dynamo-ledger.js';
import { checkCommitProtocol } from '../support/commit-model.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

it('commits under crashes and interleavings keep every invariant (DynamoLedger, 15 runs)', async () => {
  const stats = await checkCommitProtocol({
    makeLedger: async () => new DynamoLedger(emulators.dynamo, await emulators.createTable()),
    numRuns: 15,
  });
  expect(stats.runs).toBeGreaterThanOrEqual(15);
  expect(stats.versionsCommitted).toBeGreaterThan(0);
  console.info(`commit model (DynamoLedger): ${JSON.stringify(stats)}`);
}, 600_000);
