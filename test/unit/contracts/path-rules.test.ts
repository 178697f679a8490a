/**
 * The rule a new file name meets (contracts/path-rules.ts checkNewPathName): the API, the CLI and
 * the Uppy plugin show its message to people who only picked a file, so it states the rule first.
 */
import { describe, expect, it } from 'vitest';
import { checkNewPathName, PathRuleError } from '../../../contracts/path-rules.ts';

describe('checkNewPathName', () => {
  it.each(['docs/Invoice #12.pdf', 'sale/50% off.jpg', 'why?.jpg'])(
    'refuses %s with the rule first, the reason after',
    (path) => {
      let error: unknown;
      try {
        checkNewPathName(path);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PathRuleError);
      expect((error as PathRuleError).code).toBe('invalid_path');
      expect((error as PathRuleError).field).toBe('path');
      expect((error as PathRuleError).message).toMatch(/^file names may not contain "%", "\?" or "#"/);
      // The why stays, after the rule, in words that do not need to know what API Gateway is.
      expect((error as PathRuleError).message).not.toMatch(/API Gateway/);
      expect((error as PathRuleError).message).toMatch(/another file/);
    },
  );

  it('takes other names', () => {
    expect(() => checkNewPathName('docs/Invoice no 12.pdf')).not.toThrow();
  });
});
