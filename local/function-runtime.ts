/**
 * Runs inside a function's worker thread: loads the handler module once (the cold
 * start), then serves invocations one at a time, as a Lambda execution environment does.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Context } from 'aws-lambda';
import {
  type ContextData,
  type InvokeMessage,
  type SerialisedError,
  serialiseError,
  type WorkerInit,
  type WorkerMessage,
} from './function-protocol.ts';

type Handler = (event: unknown, context: Context) => unknown;

const port = parentPort;
if (port === null) throw new Error('function-runtime.ts runs in a worker thread only');
const init = workerData as WorkerInit;

let handler: Handler | undefined;
let initError: SerialisedError | undefined;
try {
  const mod = (await import(init.moduleUrl)) as Record<string, unknown>;
  const exported = mod[init.handlerName];
  if (typeof exported === 'function') handler = exported as Handler;
  else {
    initError = {
      errorType: 'Runtime.HandlerNotFound',
      errorMessage: `${init.moduleUrl} does not export a function "${init.handlerName}"`,
    };
  }
} catch (err) {
  const e = serialiseError(err);
  initError = {
    ...e,
    errorType: 'Runtime.ImportModuleError',
    errorMessage: `${e.errorType}: ${e.errorMessage}`,
  };
}

const post = (message: WorkerMessage) => port.postMessage(message);

function makeContext(data: ContextData): Context {
  const unsupported = () => {
    throw new Error(
      'callback-style completion (context.done/succeed/fail) is not supported: return a promise',
    );
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: data.functionName,
    functionVersion: data.functionVersion,
    invokedFunctionArn: data.invokedFunctionArn,
    memoryLimitInMB: data.memoryLimitInMB,
    awsRequestId: data.awsRequestId,
    logGroupName: data.logGroupName,
    logStreamName: data.logStreamName,
    getRemainingTimeInMillis: () => Math.max(0, data.deadlineMs - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

async function invoke(message: InvokeMessage): Promise<void> {
  if (handler === undefined) return;
  let result: unknown;
  try {
    result = await handler(message.event, makeContext(message.context));
  } catch (err) {
    post({ type: 'result', id: message.id, ok: false, error: serialiseError(err) });
    return;
  }
  // The result crosses as JSON, as Lambda's does (undefined becomes null).
  let json: unknown = null;
  try {
    json = result === undefined ? null : (JSON.parse(JSON.stringify(result)) as unknown);
  } catch (err) {
    const e = serialiseError(err);
    post({ type: 'result', id: message.id, ok: false, error: { ...e, errorType: 'Runtime.MarshalError' } });
    return;
  }
  post({ type: 'result', id: message.id, ok: true, result: json });
}

port.on('message', (message: InvokeMessage) => {
  if (message.type === 'invoke') void invoke(message);
});
post(initError === undefined ? { type: 'ready' } : { type: 'ready', error: initError });
