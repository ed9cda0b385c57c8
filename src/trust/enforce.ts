import type { Target } from '../content/interfaces.js';
import type { Descriptor } from '../oci/descriptor.js';
import { evaluatePolicy, LAYOUT_SCOPE_PREFIX, selectPolicy, type PolicyDecision, type PolicyEntry, type TrustPolicy } from './policy.js';
import type { TrustAnchors } from './types.js';
import { verifyManifestSignatures } from './verify-artifact.js';

export interface EnforceOptions {
  /** Check every signature, for a complete report, instead of stopping at the first that verifies. */
  all?: boolean;
  signal?: AbortSignal;
}

/**
 * Verifies a manifest under the policy whose scope covers `repository` (`registry/path`, or
 * `oci-layout:<dir>`). A `skip` policy downloads nothing. The decision says whether it may be used; it
 * is not thrown here, so that callers can print the report either way.
 */
export async function verifyUnderPolicy(
  target: Target,
  subject: Descriptor,
  repository: string,
  policy: TrustPolicy | PolicyEntry,
  opts: EnforceOptions = {},
): Promise<PolicyDecision> {
  const entry = 'policies' in policy ? selectPolicy(policy, repository) : policy;
  const where = { repository, digest: subject.digest };
  if (entry.level === 'skip') return evaluatePolicy(entry, [], where);
  const report = await verifyManifestSignatures(target, subject, {
    anchors: entry.anchors,
    // A layout has no registry name for a cosign payload to be checked against.
    ...(repository.startsWith(LAYOUT_SCOPE_PREFIX) ? {} : { expectedRepository: repository }),
    ...(opts.all ? { all: true } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return evaluatePolicy(entry, report.checks, where);
}

/** A policy of one enforcing entry, for verification from command-line flags rather than a file. */
export function adHocPolicy(anchors: TrustAnchors): PolicyEntry {
  return { name: 'command line', scopes: ['*'], level: 'enforce', signatures: 'required', anchors };
}
