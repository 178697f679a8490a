/**
 * `npm start`: the whole system on loopback (see local/sandbox.ts). Ctrl-C or SIGTERM
 * stops it in reverse order and exits 0; a second signal exits at once.
 */
import { relative } from 'node:path';
import { startSandbox } from '../local/sandbox.ts';

async function main(): Promise<void> {
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  try {
    sandbox = await startSandbox();
  } catch (err) {
    console.error(`media-mirror: the local stack did not start:\n  ${(err as Error).message}`);
    process.exit(1);
  }
  const { endpoints: e } = sandbox;
  const show = (path: string) => {
    const rel = relative(process.cwd(), path);
    return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
  };
  const targets = Object.entries(e.targets).map(
    ([id, t]) => `    ${id.padEnd(16)} ${t.kind === 's3' ? `bucket ${t.bucket}` : 'pull (agent)'}`,
  );
  console.log(
    [
      '',
      `Media Mirror local stack is up (${sandbox.startMs} ms)`,
      `  API        ${e.api}`,
      `  token      ${e.token}`,
      `  S3         ${e.s3.endpoint}  (bucket ${e.originBucket})`,
      `  SQS        ${e.sqs.endpoint}`,
      `  DynamoDB   ${e.dynamodb.endpoint}  (table ${e.table})`,
      `  data       ${show(sandbox.dataDir)}  (endpoints in ${show(sandbox.endpointsFile)})`,
      '  targets',
      ...targets,
      '',
      'Ctrl-C stops.',
      '',
    ].join('\n'),
  );

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
