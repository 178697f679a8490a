/** Lambda entry of the multipart completion (createCompleteMultipartHandler in complete-multipart-handler.ts). */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { completeMultipartConfigSchema, readConfig } from '../adapters/runtime-config.js';
import { makeCompleteMultipartDeps } from '../adapters/wiring.js';
import { createCompleteMultipartHandler } from './complete-multipart-handler.js';

const config = readConfig(completeMultipartConfigSchema);
const telemetry = makeTelemetry(makeLogger('complete-multipart'), makeMetrics('complete-multipart'));
export const handler = createCompleteMultipartHandler({
  ...makeCompleteMultipartDeps(config, telemetry.metrics),
  telemetry,
});
