/**
 * Listening on loopback with errors that say what to change.
 */
import type { Server } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';

/** Everything the local stack serves listens here, never on a public interface. */
export const LOOPBACK = '127.0.0.1';

/**
 * The names a client on this machine may use for a port of the stack. A request naming another
 * Host came from a page whose name was made to resolve to 127.0.0.1 (DNS rebinding): refused.
 */
export function loopbackHosts(port: number): Set<string> {
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
}

/** Which piece wants a port, and which variable chooses it. */
export interface PortRole {
  /** e.g. "S3 emulator (local/s3)". */
  readonly service: string;
  /** e.g. "MIRROR_S3_PORT". */
  readonly envVar: string;
}

export class PortInUseError extends Error {
  readonly port: number;
  readonly envVar: string;
  constructor(role: PortRole, port: number, cause: unknown) {
    super(
      `port ${port} on ${LOOPBACK} is already in use, so the ${role.service} cannot start: ` +
        `set ${role.envVar} to a free port (0 picks one), or stop whatever holds it (lsof -i :${port})`,
      { cause },
    );
    this.name = 'PortInUseError';
    this.port = port;
    this.envVar = role.envVar;
  }
}

/** Turns a listen error into one that names the port and its variable. */
export function describeListenError(err: unknown, role: PortRole, port: number): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return new PortInUseError(role, port, err);
  if (code === 'EACCES') {
    return new Error(
      `no permission to listen on port ${port} for the ${role.service}: set ${role.envVar} to a port above 1023`,
      { cause: err },
    );
  }
  return new Error(`the ${role.service} cannot listen on ${LOOPBACK}:${port}: ${(err as Error).message}`, {
    cause: err,
  });
}

/** Reads a port from the environment: a whole number 0-65535 (0 = any free port). */
export function portFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${name}="${raw}" is not a port number (0-65535, 0 picks a free one)`);
  }
  return port;
}

/** Listens on loopback; resolves with the bound port. */
export function listen(server: Server, port: number, role: PortRole): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: unknown) => {
      server.off('listening', onListening);
      reject(describeListenError(err, role, port));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, LOOPBACK);
  });
}

/**
 * Stops accepting connections and resolves once the server is closed. Idle keep-alive
 * connections go at once; busy ones get `graceMs` to finish before they are cut.
 */
export function closeServer(server: Server, graceMs = 5_000): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close((err) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Fails like `listen` would if the port is taken, without keeping it: for servers whose
 * construction already holds resources a failed listen would leak (dynalite opens its
 * LevelDB store when created, and its close() skips the store if it never listened).
 */
export async function assertPortFree(port: number, role: PortRole): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err) => reject(describeListenError(err, role, port)));
    probe.listen(port, LOOPBACK, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
