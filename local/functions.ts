/**
 * Local Lambda functions. Each execution environment is a worker thread with its own
 * `process.env` (only what the function is given, as on Lambda), its own module graph
 * (cold start on first use) and one invocation at a time. A function scales out to
 * `maxConcurrency` environments; further invocations wait for one to free up.
 *
 * As on Lambda, an invocation that outlives its timeout fails with "Task timed out" and
 * its environment is thrown away; so is one whose code crashes the thread.
 */
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type {
  ContextData,
  InvokeMessage,
  SerialisedError,
  WorkerInit,
  WorkerMessage,
} from './function-protocol.ts';
import { STOP_GRACE_MS, settledWithin } from './stop-grace.ts';

const BOOTSTRAP = new URL('./ts-thread.mjs', import.meta.url);
const RUNTIME = new URL('./function-runtime.ts', import.meta.url).href;

/** Where a function's output lines go (the local CloudWatch Logs). */
export type LogSink = (functionName: string, line: string, stream: 'stdout' | 'stderr') => void;

export const consoleLogSink: LogSink = (name, line, stream) => {
  (stream === 'stderr' ? process.stderr : process.stdout).write(`[${name}] ${line}\n`);
};

export interface FunctionSpec {
  /** e.g. `api`, `ingest`, `replicate-eu-west-1`. */
  readonly name: string;
  /** Path (absolute or relative to the working directory) or file: URL of the handler module. */
  readonly module: string;
  /**
   * The runtime as JavaScript (local/handler-bundles.ts), started as the worker's entry with no
   * TypeScript loader: `module` must then be JavaScript too. Without it the worker registers tsx
   * and runs function-runtime.ts, and `module` may be TypeScript (the tests' own handlers).
   */
  readonly runtime?: string;
  /** Exported name. @default 'handler' */
  readonly handlerName?: string;
  /** The function's whole environment. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutSeconds: number;
  /** @default 1024 */
  readonly memoryMb?: number;
  /** @default 10 */
  readonly maxConcurrency?: number;
  readonly region: string;
}

/** A function error, in Lambda's terms (`errorType`, `errorMessage`). */
export class FunctionError extends Error {
  readonly functionName: string;
  readonly errorType: string;
  readonly stackTrace: readonly string[];
  constructor(functionName: string, error: SerialisedError) {
    super(`${functionName}: ${error.errorType}: ${error.errorMessage}`);
    this.name = 'FunctionError';
    this.functionName = functionName;
    this.errorType = error.errorType;
    this.stackTrace = error.stackTrace ?? [];
  }
}

export interface InvocationReport {
  readonly functionName: string;
  readonly requestId: string;
  readonly durationMs: number;
  /** Set when this invocation started a new environment. */
  readonly initMs: number | undefined;
  /** The environment that ran it: its worker's thread id, as in the log stream's name. */
  readonly environmentId: number;
  readonly error: FunctionError | undefined;
}

interface Pending {
  readonly id: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: FunctionError) => void;
  readonly timer: NodeJS.Timeout;
}

/** One execution environment. */
class Environment {
  readonly worker: Worker;
  /** The worker's thread id, kept: it reads -1 once the worker has exited. */
  readonly id: number;
  readonly ready: Promise<void>;
  pending: Pending | undefined;
  dead = false;
  private nextId = 1;

  constructor(
    private readonly spec: FunctionSpec,
    log: LogSink,
    private readonly onDeath: (env: Environment) => void,
  ) {
    const module = /^file:/.test(spec.module) ? spec.module : pathToFileURL(spec.module).href;
    const init: WorkerInit = { moduleUrl: module, handlerName: spec.handlerName ?? 'handler' };
    this.worker = new Worker(spec.runtime === undefined ? BOOTSTRAP : pathToFileURL(spec.runtime), {
      // The SDK names the caller in its user agent (app/<name>): what the emulators see of the
      // function's identity, as IAM sees its role (local/observed-calls.ts).
      env: { AWS_SDK_UA_APP_ID: spec.name, ...spec.env },
      workerData: init,
      argv: spec.runtime === undefined ? [RUNTIME] : [],
      stdout: true,
      stderr: true,
      // The host's flags are not the function's (and --import loaders do not apply in workers).
      execArgv: process.execArgv.filter((a) => a === '--enable-source-maps'),
      // V8 grows each isolate's young generation to 48 MB under load: with a dozen environments
      // that alone was ~200 MB of the stack's peak (docs/local-sizing.md). Short-lived garbage is
      // what these handlers make, and a smaller nursery collects it as well.
      resourceLimits: { maxYoungGenerationSizeMb: 6 },
    });
    this.id = this.worker.threadId;
    pipeLines(this.worker.stdout, (line) => log(spec.name, line, 'stdout'));
    pipeLines(this.worker.stderr, (line) => log(spec.name, line, 'stderr'));

    this.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.type !== 'ready') return;
        this.worker.off('message', onMessage);
        if (message.error) reject(new FunctionError(spec.name, message.error));
        else resolve();
      };
      this.worker.on('message', onMessage);
      this.worker.once('exit', (code) =>
        reject(
          new FunctionError(spec.name, {
            errorType: 'Runtime.ExitError',
            errorMessage: `the runtime exited during init (code ${code})`,
          }),
        ),
      );
    });
    this.ready.catch(() => undefined);

    this.worker.on('message', (message: WorkerMessage) => {
      if (message.type !== 'result' || this.pending?.id !== message.id) return;
      const pending = this.pending;
      this.pending = undefined;
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.result);
      else pending.reject(new FunctionError(spec.name, message.error));
    });
    this.worker.on('error', (err) => this.die(errorOf('Runtime.UncaughtException', err)));
    this.worker.on('exit', (code) =>
      this.die({ errorType: 'Runtime.ExitError', errorMessage: `the runtime exited (code ${code})` }),
    );
  }

  invoke(event: unknown, context: ContextData): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeoutSeconds = this.spec.timeoutSeconds;
      const timer = setTimeout(
        () => {
          this.die({
            errorType: 'Sandbox.Timedout',
            errorMessage: `Task timed out after ${timeoutSeconds} seconds`,
          });
        },
        Math.max(0, context.deadlineMs - Date.now()),
      );
      this.pending = { id, resolve, reject, timer };
      const message: InvokeMessage = { type: 'invoke', id, event, context };
      this.worker.postMessage(message);
    });
  }

  /** Fails the invocation in progress (if any) and throws the environment away. */
  die(error: SerialisedError): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(new FunctionError(this.spec.name, error));
    }
    if (!this.dead) {
      this.dead = true;
      void this.worker.terminate();
      this.onDeath(this);
    }
  }

  /**
   * Ends the environment. An invocation still in progress fails with `reason` (the worker's exit
   * would otherwise fail it as Runtime.ExitError, which reads as a crash).
   */
  async terminate(reason?: SerialisedError): Promise<void> {
    this.dead = true;
    const pending = this.pending;
    if (pending && reason) {
      this.pending = undefined;
      clearTimeout(pending.timer);
      pending.reject(new FunctionError(this.spec.name, reason));
    }
    await this.worker.terminate();
  }
}

function pipeLines(stream: Readable, onLine: (line: string) => void): void {
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', onLine);
}

function errorOf(errorType: string, err: unknown): SerialisedError {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { errorType, errorMessage: message };
}

export class LocalFunction {
  readonly name: string;
  private readonly idle: Environment[] = [];
  private readonly all = new Set<Environment>();
  private readonly waiting: Array<() => void> = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    readonly spec: FunctionSpec,
    private readonly log: LogSink = consoleLogSink,
    private readonly onReport?: (report: InvocationReport) => void,
  ) {
    this.name = spec.name;
  }

  get timeoutSeconds(): number {
    return this.spec.timeoutSeconds;
  }

  /** Invokes the function (RequestResponse); rejects with a FunctionError on a function error. */
  invoke(event: unknown): Promise<unknown> {
    if (this.stopped) return Promise.reject(new Error(`function ${this.name} is stopped`));
    const run = this.run(event);
    this.inFlight.add(run);
    const forget = () => this.inFlight.delete(run);
    run.then(forget, forget);
    return run;
  }

  private async run(event: unknown): Promise<unknown> {
    const started = Date.now();
    const { env, initMs } = await this.acquire();
    const requestId = randomUUID();
    const deadlineMs = Date.now() + this.spec.timeoutSeconds * 1000;
    const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
    const region = this.spec.region;
    const context: ContextData = {
      functionName: this.name,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${this.name}`,
      memoryLimitInMB: String(this.spec.memoryMb ?? 1024),
      awsRequestId: requestId,
      logGroupName: `/aws/lambda/${this.name}`,
      logStreamName: `${day}/[$LATEST]${env.id}`,
      deadlineMs,
    };
    let error: FunctionError | undefined;
    try {
      return await env.invoke(event, context);
    } catch (err) {
      error =
        err instanceof FunctionError ? err : new FunctionError(this.name, errorOf('Sandbox.Error', err));
      throw error;
    } finally {
      this.release(env);
      this.onReport?.({
        functionName: this.name,
        requestId,
        durationMs: Date.now() - started,
        initMs,
        environmentId: env.id,
        error,
      });
    }
  }

  private async acquire(): Promise<{ env: Environment; initMs: number | undefined }> {
    for (;;) {
      if (this.stopped) throw new Error(`function ${this.name} is stopped`);
      const warm = this.idle.pop();
      if (warm && !warm.dead) return { env: warm, initMs: undefined };
      if (this.all.size < (this.spec.maxConcurrency ?? 10)) {
        const started = Date.now();
        const env = new Environment(this.spec, this.log, (dead) => this.forget(dead));
        this.all.add(env);
        try {
          await env.ready;
        } catch (err) {
          // Lambda retries the init on the next invocation; so does this.
          this.forget(env);
          await env.terminate();
          throw err;
        }
        return { env, initMs: Date.now() - started };
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private release(env: Environment): void {
    if (!env.dead) this.idle.push(env);
    this.waiting.shift()?.();
  }

  private forget(env: Environment): void {
    this.all.delete(env);
    const i = this.idle.indexOf(env);
    if (i >= 0) this.idle.splice(i, 1);
    this.waiting.shift()?.();
  }

  /**
   * Waits for invocations in progress (up to `graceMs`: what is left of the stack's stop grace),
   * then ends every environment; an invocation still running fails as cut off by the stop.
   */
  async stop(graceMs: number = STOP_GRACE_MS): Promise<void> {
    this.stopped = true;
    for (const wake of this.waiting.splice(0)) wake();
    await settledWithin(this.inFlight, graceMs);
    const cutOff: SerialisedError = {
      errorType: 'Sandbox.Stopped',
      errorMessage:
        'cut off by the local stack stopping (its stop grace passed); work with a checkpoint or a queue resumes on the next start',
    };
    await Promise.allSettled([...this.all].map((env) => env.terminate(cutOff)));
    this.all.clear();
    this.idle.length = 0;
  }
}
