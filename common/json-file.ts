/**
 * Reads and parses a JSON file, or tells whether one is there (Node only). Each caller words the two ways it can
 * fail in its own error class, so the agent and the CLI keep their own messages.
 */
import { access, readFile } from 'node:fs/promises';

export interface JsonFileErrors {
  /** The file could not be read (missing, unreadable). */
  readonly unreadable: (error: NodeJS.ErrnoException) => Error;
  /** The file was read but is not JSON. */
  readonly invalid: (error: Error) => Error;
}

export async function readJsonFile(file: string, errors: JsonFileErrors): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
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
