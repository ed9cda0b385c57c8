import { LadingError, type ErrorCode } from '../errors.js';
import type { SignatureCheck, Signer, TrustAnchors } from './types.js';

export type PolicyLevel = 'enforce' | 'audit' | 'skip';
export type SignatureRequirement = 'required' | 'optional';

export interface PolicyEntry {
  name: string;
  /** The scopes as written in the file. */
  scopes: string[];
  level: PolicyLevel;
  signatures: SignatureRequirement;
  anchors: TrustAnchors;
}

export interface PolicySubject {
  repository: string;
  digest: string;
}

export interface EvaluateOptions {
  /**
   * Treat finding nothing as E_SIGNATURE_MISSING even under `signatures: optional` (under audit: still
   * allowed, with the code set). For commands whose whole point is a signature, such as verify-attestation,
   * where "nothing found, accepted" would report success for something that was never checked.
   * A skip policy still skips.
   */
  requireSignature?: boolean;
}

export interface PolicyDecision {
  policy: string;
  level: PolicyLevel;
  allowed: boolean;
  /** Why enforcement refuses (or, under audit, would refuse); absent when it would allow. */
  code?: ErrorCode;
  message: string;
  warnings: string[];
  checks: SignatureCheck[];
  subject: PolicySubject;
}

/**
 * When every signature fails, the decision reports the failure that says most about the artifact: a forged
 * or misdirected signature matters more than one from a key nobody vouched for, which is the common case of
 * signatures made for someone else. Codes not listed rank between the listed ones and E_KEY_UNTRUSTED.
 */
const FAILURE_RANK: readonly ErrorCode[] = [
  'E_SIGNATURE_INVALID',
  'E_SIGNATURE_SUBJECT_MISMATCH',
  'E_IDENTITY_MISMATCH',
  'E_CERTIFICATE_INVALID',
  'E_TLOG_INVALID',
  'E_TIMESTAMP_INVALID',
  'E_BUNDLE_INVALID',
];
const LEAST_SPECIFIC: ErrorCode = 'E_KEY_UNTRUSTED';

function rank(code: ErrorCode): number {
  const i = FAILURE_RANK.indexOf(code);
  if (i >= 0) return i;
  return code === LEAST_SPECIFIC ? FAILURE_RANK.length + 1 : FAILURE_RANK.length;
}

/** A failed check without a code still failed: it counts as a signature that does not verify. */
function failureCode(c: SignatureCheck): ErrorCode {
  return c.code ?? 'E_SIGNATURE_INVALID';
}

export function describeSigner(s: Signer): string {
  return s.kind === 'key' ? `key ${s.keyId} (${s.source})` : `${s.subject} (issuer ${s.issuer})`;
}

function describeFailure(c: SignatureCheck): string {
  return `${c.source} ${c.where}: ${failureCode(c)}${c.message ? `: ${c.message}` : ''}`;
}

function subjectString(s: PolicySubject): string {
  return `${s.repository}@${s.digest}`;
}

/**
 * Applies one policy to the signature checks made for a subject. `enforce` allows when at least one
 * signature verified; `audit` decides the same way but always allows, turning a refusal into a warning;
 * `skip` allows without looking. With `requireSignature`, no checks at all is refused even where the policy
 * makes signatures optional.
 */
export function evaluatePolicy(entry: PolicyEntry, checks: SignatureCheck[], subject: PolicySubject, options: EvaluateOptions = {}): PolicyDecision {
  const base = { policy: entry.name, level: entry.level, checks, subject };
  if (entry.level === 'skip') {
    return { ...base, allowed: true, message: `verification skipped by policy ${entry.name}`, warnings: [] };
  }
  const good = checks.filter((c) => c.ok);
  const bad = checks.filter((c) => !c.ok);
  const warnings: string[] = [];
  let code: ErrorCode | undefined;
  let message: string;
  if (good.length > 0) {
    const signers = good.map((c) => (c.signer ? describeSigner(c.signer) : `${c.source} ${c.where}`));
    message = `${subjectString(subject)} is signed by ${[...new Set(signers)].join(', ')} (policy ${entry.name})`;
    // Extra signatures that do not verify are normal (other parties sign too), but worth seeing.
    for (const c of bad) warnings.push(`ignored signature ${describeFailure(c)}`);
  } else if (checks.length === 0) {
    if (entry.signatures === 'optional' && options.requireSignature !== true) {
      message = `${subjectString(subject)} is unsigned, which policy ${entry.name} accepts`;
      warnings.push(`unsigned: no signature found for ${subjectString(subject)}`);
    } else {
      code = 'E_SIGNATURE_MISSING';
      message =
        entry.signatures === 'optional'
          ? `no signature found for ${subjectString(subject)}; this command requires one, though policy ${entry.name} makes signatures optional`
          : `no signature found for ${subjectString(subject)}; policy ${entry.name} requires one`;
    }
  } else {
    // Even under `signatures: optional`: a signature that fails is evidence of tampering or a wrong signer,
    // not the absence of a signature.
    const worst = bad.reduce((a, b) => (rank(failureCode(b)) < rank(failureCode(a)) ? b : a));
    code = failureCode(worst);
    const n = bad.length;
    message =
      `none of the ${n} signature${n === 1 ? '' : 's'} of ${subjectString(subject)} is trusted by policy ${entry.name}: ` +
      describeFailure(worst);
  }
  if (code === undefined) return { ...base, allowed: true, message, warnings };
  if (entry.level === 'audit') {
    return { ...base, allowed: true, code, message: `audit: would deny: ${message}`, warnings: [...warnings, `${code}: ${message}`] };
  }
  return { ...base, allowed: false, code, message, warnings };
}

function hintFor(d: PolicyDecision): string {
  const policy = `trust policy "${d.policy}"`;
  switch (d.code) {
    case 'E_SIGNATURE_MISSING':
      return `sign ${d.subject.repository} (lading sign / cosign sign), or relax ${policy} with signatures: optional or level: audit`;
    case 'E_KEY_UNTRUSTED':
      return `the signatures were made by keys ${policy} does not list; add the signer's public key to its keys`;
    case 'E_IDENTITY_MISMATCH':
      return `the signer's identity is not one ${policy} lists; check its identities (issuer and subject)`;
    default:
      return `${policy} (level ${d.level}) decided this; run with --json for the report of every signature`;
  }
}

/** The error to throw for a refusing decision; its code is the decision's, its details the full report. */
export function decisionError(d: PolicyDecision): LadingError {
  return new LadingError(d.code ?? 'E_POLICY_DENIED', d.message, {
    hint: hintFor(d),
    details: { policy: d.policy, level: d.level, subject: d.subject, report: d.checks, warnings: d.warnings },
  });
}

/** A multi-line human report of a decision and each signature checked. */
export function formatDecision(d: PolicyDecision): string {
  const verdict = d.allowed ? (d.code ? 'allowed (audit only)' : 'allowed') : `denied (${d.code ?? 'E_POLICY_DENIED'})`;
  const lines = [
    `subject: ${subjectString(d.subject)}`,
    `policy:  ${d.policy} (${d.level})`,
    `result:  ${verdict}: ${d.message}`,
  ];
  if (d.level !== 'skip') {
    if (d.checks.length === 0) lines.push('signatures: none found');
    else lines.push('signatures:');
    for (const c of d.checks) {
      const parts = [`  ${c.ok ? '✓' : '✗'} ${c.source} ${c.where}`];
      if (c.signer) parts.push(`signer ${describeSigner(c.signer)}`);
      if (c.signedAt) parts.push(`signed ${c.signedAt}`);
      if (c.predicateType) parts.push(`predicate ${c.predicateType}`);
      if (!c.ok) parts.push(`${failureCode(c)}${c.message ? ` ${c.message}` : ''}`);
      lines.push(parts.join('  '));
    }
  }
  for (const w of d.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}
