/**
 * The local stack's on-premises agents: one in-process agent (agent/index.ts) per pull
 * target, mirroring into `<data>/onprem/<target>/`, as `media-mirror agent` would on a
 * server. Each can be stopped and started again (tests stop one to watch its lag grow).
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { agentAppId, SqsQueue } from '../agent/aws.ts';
import {
  type AgentHandle,
  type AgentLog,
  createJsonLog,
  type SandboxEndpointsLike,
  type StartAgentOptions,
  sandboxAgentOptions,
  startAgent,
} from '../agent/index.ts';
import { type DeliveryFaults, faultyQueue } from './delivery-faults.ts';

/** Agent settings the stack may shorten (tests); the rest are the agent's own defaults. */
export interface SandboxAgentTuning {
  /** @default 15 */
  readonly heartbeatSeconds?: number;
  /** Long-poll wait. @default 20 */
  readonly waitTimeSeconds?: number;
  /** @default 15 (sandboxAgentOptions) */
  readonly catchUpIntervalSeconds?: number;
  /** @default 10 */
  readonly shutdownGraceSeconds?: number;
}

export interface SandboxAgent {
  readonly targetId: string;
  /** The mirror folder, `<data>/onprem/<target>/`. */
  readonly dir: string;
  readonly running: boolean;
  /** The running agent's handle (stats, catch-up); undefined while stopped. */
  readonly handle: AgentHandle | undefined;
  /** Starts the agent (a new run on the same folder and state); no-op when running. */
  start(): Promise<void>;
  /** Stops it as SIGTERM would; no-op when stopped. */
  stop(): Promise<void>;
}

export interface AgentSpec {
  readonly endpoints: SandboxEndpointsLike;
  readonly targetId: string;
  readonly dataDir: string;
  readonly feedShards: number;
  readonly pathPrefix: string | undefined;
  readonly tuning: SandboxAgentTuning;
  /** Where the agent's JSON log lines go. */
  readonly writeLine: (line: string) => void;
  /** Every version the agent settles (the stack counts them in /metrics). */
  readonly onOutcome?: StartAgentOptions['onOutcome'];
  /** Delivery faults on the messages the agent receives from its queue (subject `agent-<target>`). */
  readonly faults?: DeliveryFaults | undefined;
}

/** The agent's own queue, through the stack's delivery faults; the client goes with the run. */
export function faultyAgentQueue(
  endpoints: SandboxEndpointsLike,
  targetId: string,
  faults: DeliveryFaults,
): { queue: ReturnType<typeof faultyQueue>; destroy: () => void } {
  const target = endpoints.targets[targetId];
  if (target?.kind !== 'pull') throw new Error(`"${targetId}" is not a pull target of the local stack`);
  const sqs = new SQSClient({
    region: endpoints.s3.region,
    endpoint: endpoints.sqs.endpoint,
    credentials: { ...endpoints.s3.credentials },
    // It stands in for the agent's own client: the same name in its user agent (agent/aws.ts).
    userAgentAppId: agentAppId(targetId),
  });
  return {
    queue: faultyQueue(new SqsQueue(sqs, target.queue), faults, `agent-${targetId}`),
    destroy: () => sqs.destroy(),
  };
}

class LocalAgent implements SandboxAgent {
  readonly targetId: string;
  readonly dir: string;
  private current: AgentHandle | undefined;
  /** Start and stop calls run one after the other. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly options: StartAgentOptions;
  private readonly spec: AgentSpec;
  private destroyQueue: (() => void) | undefined;

  constructor(spec: AgentSpec) {
    this.spec = spec;
    this.targetId = spec.targetId;
    const log: AgentLog = createJsonLog(
      {
        write: (chunk: string) => {
          for (const line of chunk.split('\n')) if (line !== '') spec.writeLine(line);
        },
      },
      { base: { target: spec.targetId } },
    );
    const base = sandboxAgentOptions(spec.endpoints, {
      targetId: spec.targetId,
      dataDir: spec.dataDir,
      feedShards: spec.feedShards,
      pathPrefix: spec.pathPrefix,
      log,
    });
    const t = spec.tuning;
    this.options = {
      ...base,
      ...(spec.onOutcome ? { onOutcome: spec.onOutcome } : {}),
      ...(t.heartbeatSeconds === undefined ? {} : { heartbeatSeconds: t.heartbeatSeconds }),
      ...(t.waitTimeSeconds === undefined ? {} : { waitTimeSeconds: t.waitTimeSeconds }),
      ...(t.catchUpIntervalSeconds === undefined ? {} : { catchUpIntervalSeconds: t.catchUpIntervalSeconds }),
      ...(t.shutdownGraceSeconds === undefined ? {} : { shutdownGraceSeconds: t.shutdownGraceSeconds }),
      // The SDK annotates the credentials object it is given: each run gets its own copy.
      aws: { ...base.aws, ...(base.aws?.credentials ? { credentials: { ...base.aws.credentials } } : {}) },
    };
    this.dir = this.options.dir;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  get handle(): AgentHandle | undefined {
    return this.current;
  }

  private serial<T>(step: () => Promise<T>): Promise<T> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  start(): Promise<void> {
    return this.serial(async () => {
      if (this.current) return;
      const credentials = this.options.aws?.credentials;
      const faulty = this.spec.faults
        ? faultyAgentQueue(this.spec.endpoints, this.targetId, this.spec.faults)
        : undefined;
      this.destroyQueue = faulty?.destroy;
      this.current = await startAgent({
        ...this.options,
        aws: { ...this.options.aws, ...(credentials ? { credentials: { ...credentials } } : {}) },
        ...(faulty ? { ports: { queue: faulty.queue } } : {}),
      });
    });
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      const handle = this.current;
      if (!handle) return;
      this.current = undefined;
      await handle.stop();
      this.destroyQueue?.();
      this.destroyQueue = undefined;
    });
  }
}

export function createSandboxAgent(spec: AgentSpec): SandboxAgent {
  return new LocalAgent(spec);
}
