/**
 * `npm start`: the whole system on loopback (see local/sandbox.ts). Ctrl-C or SIGTERM
 * stops it in reverse order and exits 0; a second signal exits at once.
 *
 * Function output is printed with the function's name, except what would only be noise
 * on a terminal: EMF metric lines (they are at /metrics) and the lag monitor's routine
 * report every few seconds. MIRROR_LOG_ALL=1 prints everything.
 *
 * Each pull target gets an in-process agent (MIRROR_AGENTS=0: none, run `media-mirror
 * agent` yourself). SIGUSR2 stops the agents, or starts them again: watch a target's lag
 * grow at /metrics and on the page while its agent is down.
 */
import { rename, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { consoleLogSink, type LogSink } from '../local/functions.ts';
import { startSandbox } from '../local/sandbox.ts';

const isEmf = (line: string) =>
  line.startsWith('{"_aws":') || /^\{.*"_aws":\{.*"CloudWatchMetrics"/.test(line);
const isRoutineLag = (name: string, line: string) =>
  name === 'lag-monitor' && line.includes('"level":"INFO"') && line.includes('"lag measured"');

const functionLog: LogSink =
  process.env.MIRROR_LOG_ALL === '1'
    ? consoleLogSink
    : (name, line, stream) => {
        if (stream === 'stdout' && (isEmf(line) || isRoutineLag(name, line))) return;
        consoleLogSink(name, line, stream);
      };

/**
 * MIRROR_OBSERVE_REQUESTS=<file>: the requests the emulators accepted, by caller (SDK app id) and
 * operation, written to <file> as JSON every second (bench/bulk.ts reports them per upload). It
 * parses every DynamoDB and SQS body: not for CPU figures.
 */
const requestsFile = process.env.MIRROR_OBSERVE_REQUESTS || undefined;

function writeRequestsEverySecond(sandbox: Awaited<ReturnType<typeof startSandbox>>, file: string): void {
  const write = async () => {
    const requests = await sandbox.observedRequests();
    await writeFile(`${file}.tmp`, JSON.stringify(requests));
    await rename(`${file}.tmp`, file);
  };
  setInterval(() => void write().catch(() => undefined), 1000).unref();
}

async function main(): Promise<void> {
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  try {
    sandbox = await startSandbox({
      functionLog,
      agents: process.env.MIRROR_AGENTS !== '0',
      observeCalls: requestsFile !== undefined,
    });
  } catch (err) {
    console.error(`media-mirror: the local stack did not start:\n  ${(err as Error).message}`);
    process.exit(1);
  }
  const { endpoints: e } = sandbox;
  if (requestsFile !== undefined) writeRequestsEverySecond(sandbox, requestsFile);
  // The token is the API's only lock on a shared machine: `npm start > stack.log` would hand it to
  // whoever may read the log (SECURITY.md, secrets in logs). A terminal is its user's own screen.
  const onTerminal = process.stdout.isTTY === true;
  const show = (path: string) => {
    const rel = relative(process.cwd(), path);
    return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
  };
  const targets = Object.entries(e.targets).map(
    ([id, t]) =>
      `    ${id.padEnd(16)} ${
        t.kind === 's3'
          ? `bucket ${t.bucket}`
          : sandbox.agents.has(id)
            ? `pull: agent mirroring into ${show(join(sandbox.dataDir, 'onprem', id))}`
            : `pull (no agent: media-mirror agent --target ${id} --dir <folder>)`
      }`,
  );
  console.log(
    [
      '',
      `Media Mirror local stack is up (${sandbox.startMs} ms)`,
      // In the fragment: never sent to a server, nor in a Referer; the page moves it to sessionStorage.
      ...(onTerminal
        ? [
            `  page       ${e.api}/#token=${encodeURIComponent(e.token)}  (upload files, watch every target)`,
            `  API        ${e.api}`,
            `  token      ${e.token}`,
          ]
        : [
            `  page       ${e.api}/#token=<token>  (upload files, watch every target)`,
            `  API        ${e.api}`,
            `  token      in ${show(sandbox.endpointsFile)} (readable by you alone; not printed into a file or pipe)`,
          ]),
      `  metrics    ${e.metrics}  (Prometheus text, no token)`,
      `  S3         ${e.s3.endpoint}  (bucket ${e.originBucket})`,
      `  SQS        ${e.sqs.endpoint}`,
      `  DynamoDB   ${e.dynamodb.endpoint}  (table ${e.table})`,
      `  data       ${show(sandbox.dataDir)}  (endpoints in ${show(sandbox.endpointsFile)})`,
      '  targets',
      ...targets,
      '',
      ...(sandbox.agents.size > 0
        ? [`Stop or restart the agents: kill -USR2 ${process.pid}. Ctrl-C stops everything.`]
        : ['Ctrl-C stops.']),
      '',
    ].join('\n'),
  );

  let toggling = false;
  process.on('SIGUSR2', () => {
    if (toggling || sandbox.agents.size === 0) return;
    toggling = true;
    const agents = [...sandbox.agents.values()];
    const start = agents.every((a) => !a.running);
    console.log(
      `\nSIGUSR2: ${start ? 'starting' : 'stopping'} the agents (${agents.map((a) => a.targetId).join(', ')})`,
    );
    Promise.all(agents.map((a) => (start ? a.start() : a.stop())))
      .then(
        () =>
          console.log(
            `agents ${start ? 'running' : 'stopped'}; kill -USR2 ${process.pid} to ${start ? 'stop' : 'start'} them`,
          ),
        (err: unknown) => console.error(`agents: ${(err as Error).message}`),
      )
      .finally(() => {
        toggling = false;
      });
  });

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      console.error(`\n${signal} again: exiting without a clean stop`);
      process.exit(1);
    }
    signalled = true;
    console.log(`\n${signal}: stopping...`);
    sandbox.stop().then(
      () => {
        console.log('stopped.');
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`stop failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

await main();
