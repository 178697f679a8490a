/**
 * The one streaming SHA-256: chunks in, lower-case hex out, memory flat whatever the size
 * (one chunk held at a time). The hash engine is injected so that this file stays
 * browser-safe: `sha256-node.ts` gives node:crypto (OpenSSL, several times faster than
 * WASM, for the CLI, the agent and the ingest), `sha256-wasm.ts` gives hash-wasm for the page.
 */

/** 4 MiB reads: large enough for either engine to run at speed, small enough to stay flat. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** One running SHA-256 computation. */
export interface Sha256Engine {
  update(chunk: Uint8Array): unknown;
  /** Lower-case hex; the engine is spent afterwards. */
  digestHex(): string;
}

/** Makes a fresh engine (async because a WASM engine is instantiated on first use). */
export type Sha256EngineFactory = () => Sha256Engine | Promise<Sha256Engine>;

export interface Digest {
  /** Lower-case hex SHA-256. */
  readonly sha256: string;
  readonly size: number;
}

export interface DigestOptions {
  /** Called after each chunk with the bytes hashed so far. */
  readonly onBytes?: ((bytesDone: number) => void) | undefined;
  /** Checked before each chunk: an abort rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * The incremental form, for a caller that hashes bytes as it writes them elsewhere
 * (the agent's download): feed chunks with `update`, then take `digest()` once.
 */
export class Sha256Digest {
  readonly #engine: Sha256Engine;
  #size = 0;

  constructor(engine: Sha256Engine) {
    this.#engine = engine;
  }

  update(chunk: Uint8Array): this {
    this.#engine.update(chunk);
    this.#size += chunk.byteLength;
    return this;
  }

  /** Bytes hashed so far. */
  get size(): number {
    return this.#size;
  }

  digest(): Digest {
    return { sha256: this.#engine.digestHex(), size: this.#size };
  }
}

/** SHA-256 and size of a stream of byte chunks, however they are split. */
export async function digestChunks(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  engine: Sha256EngineFactory,
  options: DigestOptions = {},
): Promise<Digest> {
  const { onBytes, signal } = options;
  signal?.throwIfAborted();
  const hash = new Sha256Digest(await engine());
  for await (const chunk of chunks) {
    signal?.throwIfAborted();
    hash.update(chunk);
    onBytes?.(hash.size);
  }
  return hash.digest();
}
