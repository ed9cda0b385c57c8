import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { MAX_BUNDLE_BYTES, parseBundle } from '../trust/bundle.js';
import { parseStatement } from '../trust/dsse.js';
import { discoverReferrers, renderReferrerTree } from '../trust/discover.js';
import { adHocPolicy, verifyUnderPolicy } from '../trust/enforce.js';
import { decisionError, evaluatePolicy, formatDecision, loadPolicy, selectPolicy, type PolicyEntry } from '../trust/policy.js';
import { verifyBundle, signatureCheck } from '../trust/verify-bundle.js';
import { verifyManifestAttestations } from '../trust/verify-artifact.js';
import { cliSignal, openTarget, type GlobalOptions } from './context.js';
import { emit } from './output.js';
import { withCommon } from './common.js';
import { anchorsFromOptions, withTrust, type TrustOptions } from './trust-options.js';

interface VerifyOptions extends GlobalOptions, TrustOptions {
  policy?: string;
  all?: boolean;
}

/** A message signature over a file is checked over its bytes, read whole: files above this are refused. */
const MAX_BLOB_BYTES = 512 * 1024 * 1024;

export function register(program: Command): void {
  withTrust(
    withCommon(
      program
        .command('verify')
        .description('verify the signatures of a manifest (referrers, their tag fallback, and cosign .sig tags)')
        .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
        .option('--policy <file>', 'verify under this trust policy instead of the flags')
        .option('--all', 'check every signature, not only until one verifies'),
    ),
  ).action(async (reference: string, opts: VerifyOptions) => {
    refuseMixedTrust(opts);
    const policy = opts.policy !== undefined ? await loadPolicy(opts.policy) : adHocPolicy(await anchorsFromOptions(opts));
    const opened = await openTarget(reference, opts);
    const subject = await opened.target.resolve(opened.reference);
    const decision = await verifyUnderPolicy(opened.target, subject, opened.scope, policy, { all: opts.all ?? false, signal: cliSignal });
    if (!decision.allowed) throw decisionError(decision);
    emit(opts.json, decision, () => formatDecision(decision));
  });

  withTrust(
    withCommon(
      program
        .command('verify-attestation')
        .description('verify the attestations of one predicate type attached to a manifest')
        .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
        .requiredOption('--type <uri>', 'the predicate type URI')
        .option('--policy <file>', 'take the trusted keys and identities from this trust policy')
        .option('--all', 'check every attestation of the type, not only until one verifies'),
    ),
  ).action(async (reference: string, opts: VerifyOptions & { type: string }) => {
    refuseMixedTrust(opts);
    const policy = opts.policy !== undefined ? await loadPolicy(opts.policy) : adHocPolicy(await anchorsFromOptions(opts));
    const opened = await openTarget(reference, opts);
    const subject = await opened.target.resolve(opened.reference);
    const entry: PolicyEntry = 'policies' in policy ? selectPolicy(policy, opened.scope) : policy;
    const where = { repository: opened.scope, digest: subject.digest };
    if (entry.level === 'skip') {
      const decision = evaluatePolicy(entry, [], where);
      emit(opts.json, decision, () => formatDecision(decision));
      return;
    }
    const report = await verifyManifestAttestations(opened.target, subject, opts.type, { anchors: entry.anchors, all: opts.all ?? false, signal: cliSignal });
    // Asking for an attestation means wanting one: "unsigned is fine" in a policy does not make none enough.
    const decision = evaluatePolicy(entry, report.checks, where, { requireSignature: true });
    if (!decision.allowed) throw decisionError(decision);
    const verified = report.checks.filter((c) => c.ok);
    emit(opts.json, { ...decision, attestations: verified.map((c) => ({ where: c.where, signer: c.signer, predicateType: c.predicateType, predicate: c.predicate })) }, () => formatDecision(decision));
  });

  withTrust(
    withCommon(
      program
        .command('verify-blob')
        .description('verify a sigstore bundle over a file, or over a digest for DSSE/in-toto bundles')
        .argument('<artifact>', 'a file, or sha256:<hex> / sha512:<hex>')
        .requiredOption('--bundle <file>', 'the sigstore bundle (v0.1–v0.3)'),
    ),
  ).action(async (artifact: string, opts: TrustOptions & GlobalOptions & { bundle: string }) => {
    const anchors = await anchorsFromOptions(opts);
    const bundle = parseBundle(await readBounded(opts.bundle, MAX_BUNDLE_BYTES), opts.bundle);
    if (/^sha(256|384|512):/i.test(artifact) && !isDigest(artifact)) {
      throw new LadingError('E_USAGE', `"${artifact}" is not a valid digest`, { hint: 'write sha256:<64 lower-case hex digits> or sha512:<128 lower-case hex digits>' });
    }
    const isDigestArg = isDigest(artifact);
    let input: { bytes: Buffer } | { digest: string };
    if (isDigestArg) input = { digest: artifact };
    else if (bundle.content.$case === 'dsseEnvelope') input = { digest: await fileDigest(artifact, digestAlgorithmOf(bundle)) };
    else input = { bytes: await readBounded(artifact, MAX_BLOB_BYTES) };
    const check = signatureCheck(() => verifyBundle(bundle, input, anchors), 'bundle-file', opts.bundle);
    const decision = evaluatePolicy(adHocPolicy(anchors), [check], { repository: isDigestArg ? 'blob' : artifact, digest: 'digest' in input ? input.digest : `sha256:${createHash('sha256').update(input.bytes).digest('hex')}` });
    if (!decision.allowed) throw decisionError(decision);
    emit(opts.json, decision, () => formatDecision(decision));
  });

  withCommon(
    program
      .command('discover')
      .description('print the referrer tree of a manifest: signatures, attestations, SBOMs, and cosign tags')
      .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
      .option('--depth <n>', 'levels of referrers of referrers', '4'),
  ).action(async (reference: string, opts: GlobalOptions & { depth: string }) => {
    const depth = Number(opts.depth);
    if (!Number.isInteger(depth) || depth < 1 || depth > 16) throw new LadingError('E_USAGE', `--depth takes a whole number from 1 to 16, not "${opts.depth}"`);
    const opened = await openTarget(reference, opts);
    const subject = await opened.target.resolve(opened.reference);
    const tree = await discoverReferrers(opened.target, subject, { depth, signal: cliSignal });
    emit(opts.json, { reference: opened.display, subject, referrers: tree }, () => renderReferrerTree(`${opened.display}@${subject.digest}`, tree));
  });
}

/** A policy says whom to trust; keys or identities given beside it would be silently ignored. */
function refuseMixedTrust(opts: VerifyOptions): void {
  if (opts.policy === undefined) return;
  const flags = [
    opts.key.length > 0 ? '--key' : undefined,
    opts.certificateIdentity !== undefined ? '--certificate-identity' : undefined,
    opts.certificateIdentityRegexp !== undefined ? '--certificate-identity-regexp' : undefined,
    opts.certificateOidcIssuer !== undefined ? '--certificate-oidc-issuer' : undefined,
    opts.certificateOidcIssuerRegexp !== undefined ? '--certificate-oidc-issuer-regexp' : undefined,
    opts.trustedRoot !== undefined ? '--trusted-root' : undefined,
  ].filter((f): f is string => f !== undefined);
  if (flags.length > 0) {
    throw new LadingError('E_USAGE', `--policy decides whom to trust; ${flags.join(', ')} cannot be given with it`, {
      hint: 'put the keys and identities in the policy, or drop --policy',
    });
  }
}

/** The algorithm the bundle's in-toto subjects use (sha256 unless only sha512 is given). */
function digestAlgorithmOf(bundle: ReturnType<typeof parseBundle>): 'sha256' | 'sha512' {
  if (bundle.content.$case !== 'dsseEnvelope') return 'sha256';
  // Read before verification only to know which hash to compute; the verdict comes from verifyBundle.
  const statement = parseStatement(Buffer.from(bundle.content.dsseEnvelope.payload));
  const algorithms = new Set(statement.subjects.flatMap((s) => Object.keys(s.digest)));
  return algorithms.has('sha256') || !algorithms.has('sha512') ? 'sha256' : 'sha512';
}

async function fileDigest(path: string, algorithm: 'sha256' | 'sha512'): Promise<string> {
  const hash = createHash(algorithm);
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (err) {
    throw new LadingError('E_IO', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return `${algorithm}:${hash.digest('hex')}`;
}

async function readBounded(path: string, max: number): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (st.size > max) throw new LadingError('E_TOO_LARGE', `${path} is ${st.size} bytes, over the ${max}-byte limit`);
    return await readFile(path);
  } catch (err) {
    if (err instanceof LadingError) throw err;
    throw new LadingError('E_IO', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}
