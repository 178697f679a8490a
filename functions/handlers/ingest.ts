/** Lambda entry of the ingest (createIngestHandler in ingest-handler.ts): its configuration and adapters. */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { ingestConfigSchema, readConfig } from '../adapters/runtime-config.js';
import { makeIngestDeps } from '../adapters/wiring.js';
import { createIngestHandler } from './ingest-handler.js';

const config = readConfig(ingestConfigSchema);
const telemetry = makeTelemetry(makeLogger('ingest'), makeMetrics('ingest'));
export const handler = createIngestHandler({ ...makeIngestDeps(config, telemetry.metrics), telemetry });
