/** The ledger contract (test/support/ledger-contract.ts) on InMemoryLedger. */
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { ledgerContract } from '../../support/ledger-contract.js';

ledgerContract(
  'InMemoryLedger',
  async () => {
    const ledger = new InMemoryLedger();
    return {
      ledger,
      recordAgentHeartbeat: async (targetId, heartbeatAt, conditions, rebuilding) =>
        ledger.recordAgentHeartbeat(targetId, heartbeatAt, conditions, rebuilding),
    };
  },
  { writers: 50 },
);
