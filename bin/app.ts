/**
 * The CDK app (`npx cdk synth`, `npx cdk deploy --all`): reads the topology named
 * by the context key `mirror:configFile` (cdk.json) and builds the stacks.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseTopology } from '../contracts/topology.js';
import { buildMirrorApp, createMirrorApp } from '../lib/mirror-app.js';

const app = createMirrorApp();
const configFile = String(app.node.tryGetContext('mirror:configFile') ?? 'mirror.config.json');
const configPath = path.resolve(configFile);

let raw: unknown;
try {
  raw = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (error) {
  throw new Error(
    `cannot read the topology ${configPath} (context mirror:configFile): ${(error as Error).message}`,
  );
}

buildMirrorApp(parseTopology(raw), { app });
app.synth();
