/**
 * The data folder: emulator state that survives restarts, the API token, the
 * endpoints file, and a lock so that two sandboxes never share one folder (the
 * DynamoDB emulator's LevelDB store crashes the process when opened twice).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { z } from 'zod';
import { writtenEndpointsSchema } from '../contracts/endpoints.ts';

type WrittenEndpoints = z.input<typeof writtenEndpointsSchema>;

import { makeFolders } from '../common/make-folders.ts';
import { foreignness } from '../common/own-file.ts';
import { acquirePidLock } from '../common/pid-lock.ts';

export const ENDPOINTS_FILE = 'endpoints.json';
const TOKEN_FILE = 'api-token';
const LOCK_FILE = 'sandbox.lock';

export function resolveDataDir(option: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string {
  return resolve(cwd, option ?? (env.MIRROR_DATA_DIR || '.mirror'));
}

export interface DataDirLock {
  release(): Promise<void>;
}

/** Creates the folder and takes its lock; throws if a live sandbox holds it (a dead one's is taken over). */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  await makeFolders(dir, 0o700);
  // The stack writes its token, endpoints.json and the page's files there by name: in a folder
  // others may write, a link planted at one of those names is written through, into its user's file.
  const problem = foreignness(await stat(dir));
  if (problem !== undefined) {
    throw new Error(
      `the data folder ${dir} is not to be trusted: ${problem}: chmod 700 it if it is yours, or set MIRROR_DATA_DIR to another folder`,
    );
  }
  return acquirePidLock(join(dir, LOCK_FILE), {
    inUse: ({ pid }) =>
      new Error(
        `the data folder ${dir} is in use by another local stack (pid ${pid}${pid === process.pid ? ', this process' : ''}): ` +
          'stop it, or set MIRROR_DATA_DIR to another folder',
      ),
  });
}

/** The bearer token: the given one, else the one kept in the folder, else a new one kept there. */
export async function loadOrCreateToken(dir: string, given: string | undefined): Promise<string> {
  if (given !== undefined && given.trim() !== '') return given.trim();
  const file = join(dir, TOKEN_FILE);
  try {
    const kept = (await readFile(file, 'utf8')).trim();
    if (kept !== '') return kept;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(24).toString('base64url');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

/** Writes the endpoints file: exactly the contract's fields (contracts/endpoints.ts), all of them. */
export async function writeEndpointsFile(dir: string, endpoints: WrittenEndpoints): Promise<string> {
  const file = join(dir, ENDPOINTS_FILE);
  const checked = writtenEndpointsSchema.parse(endpoints);
  // Whole or not at all: the CLI, the agent and the bench poll for this file, and a write in
  // place is seen empty between its truncation and its bytes. A rename within the folder is atomic.
  const partial = `${file}.${process.pid}.tmp`;
  await writeFile(partial, `${JSON.stringify(checked, null, 2)}\n`, { mode: 0o600 });
  await rename(partial, file);
  return file;
}

export async function removeEndpointsFile(dir: string): Promise<void> {
  await rm(join(dir, ENDPOINTS_FILE), { force: true });
}
