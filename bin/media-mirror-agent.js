#!/usr/bin/env -S node --max-semi-space-size=1 --no-opt
// `media-mirror-agent`: the on-premises agent alone (dist/agent.mjs; `media-mirror agent` runs the
// same command). In a development checkout without an up-to-date build, agent/main.ts through tsx.
//
// --max-semi-space-size=1 (MiB): V8's young generation grows to 16 MiB semi-spaces by default, about
// 10 MiB of RSS an idle agent never needs back; its downloads stream through Buffers, which live
// outside the V8 heap.
// --no-opt: no optimizing compiler (TurboFan). What it compiles while the agent starts (the SDK's
// and zod's set-up) costs about 4 MiB of RSS that stays; the agent's hot path is hashing, sockets
// and file writes in native code, and mirroring took no more CPU without it. Measured: docs/agent.md.
import { launch } from './launch.js';

await launch('dist/agent.mjs', 'agent/main.ts');
