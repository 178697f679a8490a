/** Messages between the sandbox and a function's worker thread (see functions.ts). */

export interface WorkerInit {
  /** file: URL of the handler module. */
  readonly moduleUrl: string;
  /** Exported name of the handler, `handler` unless told. */
  readonly handlerName: string;
}

/** The fields of the context object that cross the thread boundary; the worker adds the methods. */
export interface ContextData {
  readonly functionName: string;
  readonly functionVersion: string;
  readonly invokedFunctionArn: string;
  readonly memoryLimitInMB: string;
  readonly awsRequestId: string;
  readonly logGroupName: string;
  readonly logStreamName: string;
  /** Epoch milliseconds at which the invocation times out. */
  readonly deadlineMs: number;
}

export interface InvokeMessage {
  readonly type: 'invoke';
  readonly id: number;
  readonly event: unknown;
  readonly context: ContextData;
}

/** Lambda's error shape (what `Invoke` returns for a function error). */
export interface SerialisedError {
  readonly errorType: string;
  readonly errorMessage: string;
  readonly stackTrace?: readonly string[];
}

export type WorkerMessage =
  | { readonly type: 'ready'; readonly error?: SerialisedError }
  | { readonly type: 'result'; readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly type: 'result'; readonly id: number; readonly ok: false; readonly error: SerialisedError };

export function serialiseError(err: unknown, fallbackType = 'Error'): SerialisedError {
  if (err instanceof Error) {
    return {
      errorType: err.name || fallbackType,
      errorMessage: err.message,
      stackTrace: (err.stack ?? '')
        .split('\n')
        .slice(1)
        .map((l) => l.trim()),
    };
  }
  return {
    errorType: fallbackType,
    errorMessage: typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err)),
  };
}
