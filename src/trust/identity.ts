import { patternRisk } from '../artifact/schema.js';
import { LadingError } from '../errors.js';
import type { IdentityMatcher } from './types.js';

/** Patterns are user-written; bound them so that a policy cannot make matching arbitrarily expensive. */
const MAX_PATTERN_LENGTH = 1024;
/**
 * The subject is chosen by whoever obtained the certificate; bound what a pattern is run over. Real SANs
 * (workflow URIs, e-mail addresses) are far shorter, so a longer value simply matches no pattern.
 */
export const MAX_MATCHED_LENGTH = 4096;

const PATTERN_HINT =
  'a pattern is a JavaScript regular expression matched against the whole value; it must stand on its own (balanced groups, no flags) and must not nest repetition, e.g. https://github\\.com/acme/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v.*';

/** Why a pattern is refused, or undefined when it is usable. */
function patternProblem(pattern: string): string | undefined {
  if (pattern.length > MAX_PATTERN_LENGTH) return `is longer than ${MAX_PATTERN_LENGTH} characters`;
  try {
    // On its own first: a pattern such as `a)|(b` would close the anchoring group below and escape it.
    new RegExp(pattern);
  } catch (err) {
    return `is not a valid regular expression: ${(err as Error).message}`;
  }
  const risk = patternRisk(pattern);
  if (risk !== undefined) return `could take exponential time to match: ${risk}`;
  return undefined;
}

const compiled = new Map<string, RegExp>();

function compile(pattern: string): RegExp {
  const cached = compiled.get(pattern);
  if (cached) return cached;
  const problem = patternProblem(pattern);
  if (problem !== undefined) {
    throw new LadingError('E_POLICY_INVALID', `the identity pattern ${JSON.stringify(pattern)} ${problem}`, { hint: PATTERN_HINT });
  }
  // Anchored whatever the author wrote: an unanchored pattern would accept any identity containing it.
  // No flags: the pattern compiled on its own above, so it cannot close this group or add any.
  const re = new RegExp(`^(?:${pattern})$`);
  if (compiled.size >= 256) compiled.clear();
  compiled.set(pattern, re);
  return re;
}

/** Refuses a matcher that does not say exactly one thing about each of the subject and the issuer. */
export function checkIdentityMatcher(m: IdentityMatcher, where: string): void {
  const fail = (why: string, hint?: string): never => {
    throw new LadingError('E_POLICY_INVALID', `${where}: ${why}`, {
      hint: hint ?? 'an identity names the issuer (issuer or issuerPattern) and the subject (subject or subjectPattern), one of each',
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
      const problem = patternProblem(p as string);
      if (problem !== undefined) fail(`${pattern} ${JSON.stringify(p)} ${problem}`, PATTERN_HINT);
    }
  }
}

function matchOne(value: string, exact: string | undefined, pattern: string | undefined): boolean {
  if (exact !== undefined) return value === exact;
  if (pattern !== undefined) {
    if (value.length > MAX_MATCHED_LENGTH) return false;
    const m = compile(pattern).exec(value);
    // The anchors already demand this; checked again so that no way of writing the pattern can match a part.
    return m !== null && m.index === 0 && m[0].length === value.length;
  }
  // A matcher that says nothing about a field must not accept everything.
  return false;
}

export function matchIdentity(id: { subject: string; issuer: string }, m: IdentityMatcher): boolean {
  return matchOne(id.subject, m.subject, m.subjectPattern) && matchOne(id.issuer, m.issuer, m.issuerPattern);
}
