#!/usr/bin/env node
// `npx media-mirror`: runs the TypeScript CLI (bin/cli.ts) through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
