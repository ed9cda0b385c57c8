import { LadingError } from '../errors.js';
import type { IdentityMatcher } from './types.js';

/** Patterns are user-written; bound them so that a policy cannot make matching arbitrarily expensive. */
const MAX_PATTERN_LENGTH = 1024;

function compile(pattern: string): RegExp {
  // Anchored whatever the author wrote: an unanchored pattern would accept any identity containing it.
  return new RegExp(`^(?:${pattern})$`);
}

/** Refuses a matcher that does not say exactly one thing about each of the subject and the issuer. */
export function checkIdentityMatcher(m: IdentityMatcher, where: string): void {
  const fail = (why: string): never => {
    throw new LadingError('E_POLICY_INVALID', `${where}: ${why}`, {
      hint: 'an identity names the issuer (issuer or issuerPattern) and the subject (subject or subjectPattern), one of each',
    });
  };
  for (const [exact, pattern] of [
    ['subject', 'subjectPattern'],
    ['issuer', 'issuerPattern'],
  ] as const) {
    const e = m[exact];
    const p = m[pattern];
    if (e === undefined && p === undefined) fail(`${exact} or ${pattern} is required`);
    if (e !== undefined && p !== undefined) fail(`give ${exact} or ${pattern}, not both`);
    if (e !== undefined && (typeof e !== 'string' || e === '')) fail(`${exact} must be a non-empty string`);
    if (p !== undefined) {
      if (typeof p !== 'string' || p === '') fail(`${pattern} must be a non-empty string`);
      if (p.length > MAX_PATTERN_LENGTH) fail(`${pattern} is longer than ${MAX_PATTERN_LENGTH} characters`);
      try {
        compile(p);
      } catch (err) {
        fail(`${pattern} is not a valid regular expression: ${(err as Error).message}`);
      }
    }
  }
}

function matchOne(value: string, exact: string | undefined, pattern: string | undefined): boolean {
  if (exact !== undefined) return value === exact;
  if (pattern !== undefined) return compile(pattern).test(value);
  // A matcher that says nothing about a field must not accept everything.
  return false;
}

export function matchIdentity(id: { subject: string; issuer: string }, m: IdentityMatcher): boolean {
  return matchOne(id.subject, m.subject, m.subjectPattern) && matchOne(id.issuer, m.issuer, m.issuerPattern);
}
