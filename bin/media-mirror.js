#!/usr/bin/env node
// `media-mirror`: the bundled CLI (dist/media-mirror.mjs); in a development checkout without an
// up-to-date build, bin/cli.ts through tsx (bin/launch.js).
import { launch } from './launch.js';

await launch('dist/media-mirror.mjs', 'bin/cli.ts');
