/**
 * The path policy (contracts/paths.ts) as the domain raises it: a broken rule is a
 * ValidationError on field `path` with the rule's code (`invalid_path`, `path_conflict`),
 * which the API answers as 400. The rules themselves live in the contract alone.
 */
import { type PathOccupancy, PathRuleError, PathPolicy as PathRules } from '../../contracts/paths.ts';
import { ValidationError } from './errors.js';

/** The domain's error for a broken path rule: same message, field and code. */
export function asValidationError(error: unknown): unknown {
  return error instanceof PathRuleError
    ? new ValidationError(error.field, error.message, { code: error.code, cause: error })
    : error;
}

export class PathPolicy extends PathRules {
  override check(raw: unknown): string {
    try {
      return super.check(raw);
    } catch (error) {
      throw asValidationError(error);
    }
  }

  override admit(raw: unknown): string {
    try {
      return super.admit(raw);
    } catch (error) {
      throw asValidationError(error);
    }
  }

  override async checkOccupancy(
    path: string,
    ledger: PathOccupancy,
    options: { deferFolders?: number } = {},
  ): Promise<string[]> {
    try {
      return await super.checkOccupancy(path, ledger, options);
    } catch (error) {
      throw asValidationError(error);
    }
  }
}
