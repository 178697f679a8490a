/**
 * `npm run bench`: every figure of docs/scale.md's "Measured here" beside its peer and its
 * goal, each the median of three runs with the spread (min–max), printed as one table.
 *
 *   (a) stream SHA-256 of a 1 GiB file vs `openssl dgst -sha256`            bench/hash.ts
 *   (b) DynamoDB calls per commit and commits/s on the local DynamoDB       bench/ledger.ts
 *   (c) bulk 500 × 64 KiB through the API vs `rclone copy` into 2 buckets    bench/bulk.ts
 *   (d) one new file among 10,000 vs one `rclone sync`                      bench/one-new.ts
 *   (e) sustained 20 uploads/s for 60 s: lag per target, backlog             bench/sustained.ts
 *   (f) CPU per upload and peak RSS of the `npm start` tree and the agent    bench/bulk.ts
 *   (g) `media-mirror --help` time and the agent's idle RSS, installed bins    bench/bundle.ts
 *   (h) `sync` of a 2,000-file folder vs `rclone copy` of it into 2 buckets    bench/sync.ts
 *
 * (c)–(f) and (h) run against `npm start` in a child process (bench/stack.ts).
 *   npm run bench                        everything (about 30 min on 2 busy cores)
 *   npm run bench -- --quick             small counts, one run each (CI: finishes, meets nothing)
 *   npm run bench -- --only=hash,ledger  some sections (hash, ledger, bulk, sustained, one-new, bundle, sync)
 *   npm run bench -- --only=sync --sync-files=300 --runs=1   (h) alone, smaller
 *   npm run bench -- --runs=1 --tree-files=2000 --sustained-seconds=15   fewer runs, smaller (d) and (e)
 *   npm run bench -- gate                the gates' own cost (bench/gate.ts)
 */
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BulkRun, bulkRun } from './bulk.ts';
import { benchBundle } from './bundle.ts';
import { benchGate } from './gate.ts';
import { benchHash } from './hash.ts';
import { benchLedger } from './ledger.ts';
import { makeFiles, targetProbes, uploadAll, watchTargets } from './load.ts';
import { seedTree } from './one-new.ts';
import { rcloneFor } from './rclone.ts';
import { type BenchStack, startStack } from './stack.ts';
import { type Row, ratios, show, spread, table } from './stats.ts';
import { sustainedRun, type TargetLag } from './sustained.ts';
import { type SyncRun, syncRun } from './sync.ts';

const SECTIONS = ['hash', 'ledger', 'bulk', 'sustained', 'one-new', 'bundle', 'sync'] as const;
/** The sections that need the stack (`npm start`). */
const STACK_SECTIONS: readonly Section[] = ['bulk', 'sustained', 'one-new', 'sync'];
type Section = (typeof SECTIONS)[number];

const FULL = {
  runs: 3,
  hashMiB: 1024,
  ledgerUploads: 200,
  bulkFiles: 500,
  rate: 20,
  seconds: 60,
  treeFiles: 10_000,
  syncFiles: 2000,
};
const QUICK = {
  runs: 1,
  hashMiB: 64,
  ledgerUploads: 20,
  bulkFiles: 40,
  rate: 5,
  seconds: 10,
  treeFiles: 100,
  syncFiles: 100,
};
type Settings = typeof FULL;

const log = (line: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
const seriesOf = <T>(runs: readonly T[], pick: (r: T) => number) => spread(runs.map(pick));

function bulkRows(runs: readonly BulkRun[], s: Settings): Row[] {
  const ours = runs.map((r) => r.seconds);
  const peer = runs.map((r) => r.rcloneSeconds);
  const ratio = spread(ratios(ours, peer, true));
  const cpu = seriesOf(runs, (r) => r.stackCpuMs + (Number.isNaN(r.agentCpuMs) ? 0 : r.agentCpuMs));
  const rss = seriesOf(runs, (r) => r.stackPeakMiB);
  return [
    {
      figure: `bulk ${s.bulkFiles} × 64 KiB, 16 clients, until both S3 targets hold all`,
      measured: show(spread(ours), 's'),
      peer: `rclone copy --transfers 16 into 2 buckets: ${show(spread(peer), 's')}`,
      ratio: show(ratio, 'x'),
      goal: '>= 0.25x',
      met: ratio.median >= 0.25,
    },
    {
      figure: 'bulk, until the agent (pull target) holds all too',
      measured: show(
        seriesOf(runs, (r) => r.agentSeconds),
        's',
      ),
      goal: '',
    },
    {
      figure: 'CPU per upload, npm start tree + agent (bulk)',
      measured: `${show(cpu, 'ms', 0)} (stack ${show(
        seriesOf(runs, (r) => r.stackCpuMs),
        'ms',
        0,
      )})`,
      goal: '<= 40 ms',
      met: cpu.median <= 40,
    },
    {
      figure: 'peak RSS, npm start tree (bulk)',
      measured: show(rss, 'MiB', 0),
      goal: '<= 600 MB',
      met: rss.median * 1.048576 <= 600,
    },
    {
      figure: 'peak RSS, agent process (bulk)',
      measured: show(
        seriesOf(runs, (r) => r.agentPeakMiB),
        'MiB',
        0,
      ),
      goal: '',
    },
  ];
}

function syncRows(runs: readonly SyncRun[], s: Settings): Row[] {
  const first = spread(
    ratios(
      runs.map((r) => r.seconds),
      runs.map((r) => r.rcloneSeconds),
      true,
    ),
  );
  const again = spread(
    ratios(
      runs.map((r) => r.againSeconds),
      runs.map((r) => r.rcloneAgainSeconds),
      true,
    ),
  );
  const sent = spread(runs.map((r) => r.bytesSent / 1024 ** 2));
  return [
    {
      figure: `sync of a ${s.syncFiles.toLocaleString('en')}-file folder (1 B-12 KiB, 1 in 10 a duplicate), until both S3 targets hold all`,
      measured: `${show(
        seriesOf(runs, (r) => r.seconds),
        's',
      )} (committed at the origin: ${show(
        seriesOf(runs, (r) => r.committedSeconds),
        's',
      )}; ${show(sent, 'MiB')} sent, ${show(
        seriesOf(runs, (r) => r.deduplicated),
        '',
        0,
      )} deduplicated)`,
      peer: `rclone copy --transfers 16 into 2 buckets: ${show(
        seriesOf(runs, (r) => r.rcloneSeconds),
        's',
      )}`,
      ratio: show(first, 'x'),
      goal: '>= 1x',
      met: first.median >= 1,
    },
    {
      figure: 'sync of the same folder again, nothing changed',
      measured: show(
        seriesOf(runs, (r) => r.againSeconds),
        's',
      ),
      peer: `rclone copy again: ${show(
        seriesOf(runs, (r) => r.rcloneAgainSeconds),
        's',
      )}`,
      ratio: show(again, 'x'),
      goal: '>= 1x',
      met: again.median >= 1,
    },
  ];
}

function sustainedRows(runs: readonly Map<string, TargetLag>[], s: Settings): Row[] {
  const ids = [...(runs[0]?.keys() ?? [])];
  return ids.map((id) => {
    const of = (pick: (l: TargetLag) => number) => spread(runs.map((r) => pick(r.get(id) as TargetLag)));
    const p95 = of((l) => l.p95);
    const half = of((l) => l.backlogHalf);
    const end = of((l) => l.backlogEnd);
    const growing = end.median > Math.max(half.median, s.rate);
    const refused = of((l) => l.refused);
    return {
      figure: `sustained ${s.rate}/s for ${s.seconds} s, lag to ${id} p50 / p95 / p99`,
      measured: `${show(
        of((l) => l.p50),
        '',
        2,
      )} / ${show(p95, '', 2)} / ${show(
        of((l) => l.p99),
        's',
        2,
      )}; backlog ${show(half, '', 0)} at half time, ${show(end, '', 0)} at the end; ${show(refused, '', 0)} uploads refused (503)`,
      goal: 'p95 <= 1 s, backlog not growing',
      met: p95.median <= 1 && !growing && refused.median === 0,
    };
  });
}

async function stackSections(
  sections: ReadonlySet<Section>,
  s: Settings,
  add: (rows: Row[]) => void,
): Promise<void> {
  const stack: BenchStack = await startStack({ agent: true, log });
  // The stack and the agent run in process groups of their own: an interrupted bench stops them.
  const interrupted = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping the stack`);
    stack.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const rclone = rcloneFor(stack);
    // Cold starts (a dozen function environments loading their code) are not the figures':
    // one round of uploads through every function and target first.
    const warm = makeFiles('bench/warm', 16, 64 * 1024);
    await uploadAll(stack, warm, 16);
    await watchTargets(targetProbes(stack, true), 'bench/warm', new Set(warm.map((f) => f.path)), {
      intervalMs: 200,
      timeoutMs: 300_000,
    });
    log(`warm (load ${load()})`);
    if (sections.has('bulk')) {
      const runs: BulkRun[] = [];
      for (let i = 0; i < s.runs; i++) {
        runs.push(await bulkRun(stack, rclone, { files: s.bulkFiles, run: i, timeoutMs: 600_000 }));
        log(`bulk run ${i + 1}: ${JSON.stringify(runs.at(-1))} (load ${load()})`);
      }
      add(bulkRows(runs, s));
    }
    if (sections.has('sustained')) {
      const runs: Map<string, TargetLag>[] = [];
      for (let i = 0; i < s.runs; i++) {
        runs.push(await sustainedRun(stack, { rate: s.rate, seconds: s.seconds, run: i }));
        log(
          `sustained run ${i + 1}: ${JSON.stringify([...(runs.at(-1) as Map<string, TargetLag>)])} (load ${load()})`,
        );
      }
      add(sustainedRows(runs, s));
    }
    if (sections.has('sync')) {
      const runs: SyncRun[] = [];
      for (let i = 0; i < s.runs; i++) {
        runs.push(await syncRun(stack, rclone, { files: s.syncFiles, run: i, timeoutMs: 900_000 }));
        log(`sync run ${i + 1}: ${JSON.stringify(runs.at(-1))} (load ${load()})`);
      }
      add(syncRows(runs, s));
    }
    if (sections.has('one-new')) {
      const tree = await seedTree(stack, rclone, { files: s.treeFiles, log });
      const runs: { seconds: number; rcloneSeconds: number }[] = [];
      for (let i = 0; i < s.runs; i++) {
        runs.push(await tree.run(i));
        log(`one-new run ${i + 1}: ${JSON.stringify(runs.at(-1))} (load ${load()})`);
      }
      const ours = runs.map((r) => r.seconds);
      const peer = runs.map((r) => r.rcloneSeconds);
      const ratio = spread(ratios(ours, peer, true));
      add([
        {
          figure: `one new file among ${s.treeFiles.toLocaleString('en')}, upload start until in both S3 targets`,
          measured: show(spread(ours), 's'),
          peer: `rclone sync --checksum --fast-list: ${show(spread(peer), 's')}`,
          ratio: show(ratio, 'x', 1),
          goal: '>= 20x',
          met: ratio.median >= 20,
        },
      ]);
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await stack.stop();
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      runs: { type: 'string' },
      'tree-files': { type: 'string' },
      'sustained-seconds': { type: 'string' },
      'sync-files': { type: 'string' },
    },
    allowPositionals: true,
  });
  if (positionals[0] === 'gate') {
    await benchGate();
    return;
  }
  const s: Settings = {
    ...(values.quick ? QUICK : FULL),
    ...(values.runs === undefined ? {} : { runs: Number(values.runs) }),
    ...(values['tree-files'] === undefined ? {} : { treeFiles: Number(values['tree-files']) }),
    ...(values['sustained-seconds'] === undefined ? {} : { seconds: Number(values['sustained-seconds']) }),
    ...(values['sync-files'] === undefined ? {} : { syncFiles: Number(values['sync-files']) }),
  };
  const wanted = values.only?.split(',') ?? [...SECTIONS];
  const unknown = wanted.filter((w) => !(SECTIONS as readonly string[]).includes(w));
  if (unknown.length > 0)
    throw new Error(`unknown section ${unknown.join(', ')}: choose from ${SECTIONS.join(', ')}`);
  const sections = new Set(wanted as Section[]);
  const loadBefore = load();
  log(`${values.quick ? 'quick' : 'full'} bench, sections ${[...sections].join(', ')}; load ${loadBefore}`);
  const rows: Row[] = [];
  const add = (more: Row[]) => {
    rows.push(...more);
    // Printed as they come too: a later section that fails leaves these.
    for (const r of more)
      log(`${r.figure}: ${r.measured}${r.peer ? `; ${r.peer}` : ''}${r.ratio ? `; ratio ${r.ratio}` : ''}`);
  };
  if (sections.has('hash')) {
    add(
      await benchHash({
        file: join(tmpdir(), `mirror-bench-${process.pid}.bin`),
        mib: s.hashMiB,
        runs: s.runs,
      }),
    );
  }
  if (sections.has('ledger')) add(await benchLedger({ uploads: s.ledgerUploads, runs: s.runs, log }));
  if (STACK_SECTIONS.some((x) => sections.has(x))) await stackSections(sections, s, add);
  // Alone on the machine: the stack sections' processes have stopped.
  if (sections.has('bundle')) add(await benchBundle({ log }));
  console.log(
    `\nMedia Mirror bench (${values.quick ? 'quick: small counts, one run' : `median of ${s.runs} runs (min–max)`}); load average ${loadBefore} before, ${load()} after\n`,
  );
  console.log(table(rows));
}

await main();
