/** Where the CDK app finds the Lambda handlers it bundles. */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file lives in `<root>/lib`). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The Lambda handlers: each file exports `handler`. */
export type HandlerName =
  | 'api'
  | 'ingest'
  | 'complete-multipart'
  | 'replicate'
  | 'lag-monitor'
  | 'reconcile'
  | 'pending-sweep';

/** Absolute path of a handler's entry file. */
export function handlerEntry(name: HandlerName): string {
  return path.join(REPO_ROOT, 'functions', 'handlers', `${name}.ts`);
}

/** The lock file that pins what esbuild bundles. */
export const LOCK_FILE = path.join(REPO_ROOT, 'package-lock.json');
