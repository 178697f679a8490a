/** Lambda entry of the upload API (createApiHandler in api-handler.ts): its configuration and adapters. */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { apiConfigSchema, readConfig } from '../adapters/runtime-config.js';
import { makeApiDeps } from '../adapters/wiring.js';
import { createApiHandler } from './api-handler.js';

const config = readConfig(apiConfigSchema);
const telemetry = makeTelemetry(makeLogger('api'), makeMetrics('api'));
export const handler = createApiHandler({ ...makeApiDeps(config, telemetry.metrics), telemetry });
