/**
 * Where the API is and how to authenticate: `--api`/`--token` (or MIRROR_API_URL /
 * MIRROR_API_TOKEN) win field by field over the endpoints file that `npm start`
 * writes to `$MIRROR_DATA_DIR/endpoints.json` (MIRROR_DATA_DIR defaults to `.mirror`).
 */
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ForeignFileError, readOwnTextFile } from '../common/own-file.ts';
import { endpointsProblems, endpointsSchema } from '../contracts/endpoints.ts';
import { ConfigError, UsageError } from './errors.ts';

/** How the CLI authenticates to the API: a bearer token, or SigV4 with AWS credentials (IAM authorizer). */
export type ApiAuth = 'bearer' | 'iam';

export type Connection =
  | {
      /** API base URL without a trailing slash, e.g. `http://127.0.0.1:8787`. */
      readonly api: string;
      readonly auth: 'bearer';
      readonly token: string;
    }
  | { readonly api: string; readonly auth: 'iam' };

export interface ConnectionOptions {
  /** `--endpoints <file>`. */
  endpoints?: string | undefined;
  /** `--api <url>`. */
  api?: string | undefined;
  /** `--token <t>`. */
  token?: string | undefined;
  /** `--auth <bearer|iam>` (env MIRROR_API_AUTH). @default bearer */
  auth?: string | undefined;
}

const HINT = 'start the local stack with npm start, or pass --api/--token';

/** The CLI reads the API and its token alone: the rest of the file is not its business. */
const connectionFields = endpointsSchema.pick({ api: true, token: true });

/** Without `--endpoints`: `$MIRROR_ENDPOINTS` (as the agent reads it), else the data folder's file. */
export function defaultEndpointsFile(env: NodeJS.ProcessEnv, cwd: string): string {
  const named = nonEmpty(env.MIRROR_ENDPOINTS);
  if (named !== undefined) return resolve(cwd, named);
  return resolve(cwd, env.MIRROR_DATA_DIR || '.mirror', 'endpoints.json');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Checks and normalises an API base URL (http or https, no query, no trailing slash). */
export function normaliseApiUrl(value: string, source: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badValue(source, `"${value}" is not a URL (expected e.g. http://127.0.0.1:8787)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badValue(source, `"${value}" must be an http:// or https:// URL`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw badValue(source, `"${value}" must not have a query or fragment`);
  }
  // Every request carries the bearer token or a SigV4 signature (with the session token): over plain
  // http to another machine, anyone on the way could read and replay it. The local stack listens
  // on loopback only, and API Gateway speaks https.
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    throw badValue(
      source,
      `"${value}" would send the credential in clear text: use https:// (plain http is for the local stack on this machine only)`,
    );
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

/** This machine: `localhost`, 127.0.0.0/8 or ::1 (a URL's hostname, so IPv6 in brackets). */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

/** The file's fields, or `undefined` when there is no such file. */
async function readEndpointsFile(file: string): Promise<z.infer<typeof connectionFields> | undefined> {
  let text: string;
  try {
    text = await readOwnTextFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof ForeignFileError) {
      throw new ConfigError(
        `endpoints file ${file} is not to be trusted: ${err.problem}. It names where the CLI sends your files and token: ` +
          'fix its mode (chmod go-w) if it is yours, else pass --api and --token',
        { cause: err },
      );
    }
    throw new ConfigError(`cannot read endpoints file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`endpoints file ${file} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const parsed = connectionFields.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(`endpoints file ${file} is malformed: ${endpointsProblems(parsed.error)}`);
  }
  return parsed.data;
}

/** No endpoints file: with half the flags given, say which half is missing. */
function noEndpointsFile(
  file: string,
  given: { apiFlag: string | undefined; tokenFlag: string | undefined },
): ConfigError {
  const missing = `no endpoints file at ${file}: ${HINT}`;
  if (given.apiFlag !== undefined)
    return new ConfigError(`--api given without --token (or MIRROR_API_TOKEN); ${missing}`);
  if (given.tokenFlag !== undefined)
    return new ConfigError(`--token given without --api (or MIRROR_API_URL); ${missing}`);
  return new ConfigError(missing);
}

/** Resolves the connection; reads the endpoints file only when a flag or variable is missing. */
export async function loadConnection(
  options: ConnectionOptions,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<Connection> {
  const apiFlag = nonEmpty(options.api) ?? nonEmpty(env.MIRROR_API_URL);
  const tokenFlag = nonEmpty(options.token) ?? nonEmpty(env.MIRROR_API_TOKEN);
  const apiSource = nonEmpty(options.api) ? '--api' : 'MIRROR_API_URL';
  const auth = apiAuth(nonEmpty(options.auth), nonEmpty(env.MIRROR_API_AUTH));

  // Everything given by flags or variables: the file is not read (it may not exist).
  const given =
    apiFlag === undefined ? undefined : connectionOf(normaliseApiUrl(apiFlag, apiSource), auth, tokenFlag);
  if (given !== undefined) return given;

  const file = options.endpoints ? resolve(cwd, options.endpoints) : defaultEndpointsFile(env, cwd);
  const fromFile = await readEndpointsFile(file);
  if (fromFile === undefined) throw noEndpointsFile(file, { apiFlag, tokenFlag });

  const api = apiFlag ?? fromFile.api;
  const token = tokenFlag ?? fromFile.token;
  if (api === undefined) throw new ConfigError(`endpoints file ${file} has no "api" URL: ${HINT}`);
  const url = normaliseApiUrl(api, apiFlag !== undefined ? apiSource : `endpoints file ${file}`);
  const connection = connectionOf(url, auth, token);
  if (connection === undefined) throw new ConfigError(`endpoints file ${file} has no "token": ${HINT}`);
  return connection;
}

/** The connection, if `auth` has what it needs (a bearer token needs the token; iam, nothing more). */
function connectionOf(api: string, auth: ApiAuth, token: string | undefined): Connection | undefined {
  if (auth === 'iam') return { api, auth };
  return token === undefined ? undefined : { api, auth, token };
}

function apiAuth(flag: string | undefined, variable: string | undefined): ApiAuth {
  const value = flag ?? variable;
  if (value === undefined || value === 'bearer') return 'bearer';
  if (value === 'iam') return 'iam';
  throw badValue(flag === undefined ? 'MIRROR_API_AUTH' : '--auth', `"${value}" is not bearer or iam`);
}

/** A bad flag value is a usage error (exit 2, as commander's own); a bad variable or file, configuration (1). */
function badValue(source: string, problem: string): ConfigError | UsageError {
  const message = `${source}: ${problem}`;
  return source.startsWith('--') ? new UsageError(message) : new ConfigError(message);
}
