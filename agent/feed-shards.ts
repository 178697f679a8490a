/**
 * Whether a feed-shard count can be trusted. The heads `verify` compares with, and the entries
 * catch-up applies, come from shards 0..count-1 only: with too few, every path of the other shards
 * looks absent from the ledger, and `verify --repair` would remove those files as extras
 * (docs/agent.md, "The feed shard count").
 */
import { MAX_FEED_SHARDS } from '../contracts/topology.ts';
import type { AgentConfig } from './config.ts';
import { AgentConfigError } from './errors.ts';
import type { LedgerView } from './ports.ts';

/** Where the configured count came from, as an operator reads it. */
function countFrom(config: Pick<AgentConfig, 'feedShards' | 'feedShardsFrom'>): string {
  const from = config.feedShardsFrom ?? 'the configuration';
  const what = `${config.feedShards} feed shard${config.feedShards === 1 ? '' : 's'}`;
  return from === 'default'
    ? `the default (no --feed-shards, MIRROR_FEED_SHARDS, endpoints file or mirror.config.json gave a count) gives ${what}`
    : `${from} gives ${what}`;
}

/** Shards asked at once: enough to keep the check short, not a burst of 60 requests at every start. */
const SHARDS_AT_ONCE = 8;

/**
 * The first shard at or past the configured count that holds entries: one query of at most one
 * entry per shard up to MAX_FEED_SHARDS, since a deployment with more shards writes there.
 * A few at a time, stopping at the first window that finds one.
 */
async function firstShardBeyond(
  ledger: Pick<LedgerView, 'readFeed'>,
  count: number,
): Promise<number | undefined> {
  for (let from = count; from < MAX_FEED_SHARDS; from += SHARDS_AT_ONCE) {
    const window = Array.from(
      { length: Math.min(SHARDS_AT_ONCE, MAX_FEED_SHARDS - from) },
      (_, i) => from + i,
    );
    const used = await Promise.all(
      window.map(async (shard) => (await ledger.readFeed(shard, 0, 1)).length > 0),
    );
    const index = used.indexOf(true);
    if (index !== -1) return window[index];
  }
  return undefined;
}

/** Throws (exit 78) when the ledger's feed has entries in a shard the configured count leaves out. */
export async function checkShardCountAgainstLedger(
  ledger: Pick<LedgerView, 'readFeed'>,
  config: Pick<AgentConfig, 'feedShards' | 'feedShardsFrom'>,
): Promise<void> {
  const shard = await firstShardBeyond(ledger, config.feedShards);
  if (shard === undefined) return;
  throw new AgentConfigError(
    `${countFrom(config)}, but the ledger's change feed has entries under FEED#${shard}: the deployment ` +
      'has more shards (its feedShards in mirror.config.json). Pass that count (--feed-shards or ' +
      'MIRROR_FEED_SHARDS); with fewer, every path of the other shards would look absent from the ledger',
  );
}

/**
 * Throws (exit 78) when the configured count is not the one the agent's state records: verify
 * trusts only the count the agent runs with (the agent itself takes a new count the ledger agrees
 * with, and records it).
 */
export function checkShardCountAgainstState(
  config: Pick<AgentConfig, 'feedShards' | 'feedShardsFrom' | 'stateDir'>,
  recorded: unknown,
): void {
  if (typeof recorded !== 'number' || recorded === config.feedShards) return;
  throw new AgentConfigError(
    `${countFrom(config)}, but the state in ${config.stateDir} records ${recorded}, the count the ` +
      `agent has been running with. Pass --feed-shards ${recorded} (or MIRROR_FEED_SHARDS), as the agent's ` +
      'environment does; if the deployment changed its count, start the agent with the new count first',
  );
}
