/**
 * Reads and parses a JSON file, or tells whether one is there (Node only). Each caller words the two ways it can
 * fail in its own error class, so the agent and the CLI keep their own messages.
 */
import { access, readFile } from 'node:fs/promises';
import { ForeignFileError, readOwnTextFile } from './own-file.ts';

export interface JsonFileErrors {
  /** The file could not be read (missing, unreadable). */
  readonly unreadable: (error: NodeJS.ErrnoException) => Error;
  /** The file was read but is not JSON. */
  readonly invalid: (error: Error) => Error;
  /** Given, the file must be the reader's own (common/own-file.ts): a file that says where to send things. */
  readonly foreign?: (error: ForeignFileError) => Error;
  /** With `foreign`: its group may write it (common/own-file.ts). @default false */
  readonly groupMayWrite?: boolean;
}

export async function readJsonFile(file: string, errors: JsonFileErrors): Promise<unknown> {
  let text: string;
  try {
    text =
      errors.foreign === undefined
        ? await readFile(file, 'utf8')
        : await readOwnTextFile(file, { groupMayWrite: errors.groupMayWrite === true });
  } catch (error) {
    if (error instanceof ForeignFileError && errors.foreign !== undefined) throw errors.foreign(error);
    throw errors.unreadable(error as NodeJS.ErrnoException);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw errors.invalid(error as Error);
  }
}

/** Whether a file is there to read (an optional config file: absent is not an error). */
export async function fileExists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
