import type { Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { LadingError, toLadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { parseBundle } from './bundle.js';
import { parseStatement } from './dsse.js';
import { fetchReferrerBundle, isSignatureReferrer, legacySignatureLayers, listBundleReferrers, type BundleReferrer, COSIGN_SIGN_PREDICATE } from './find.js';
import { checkSimpleSigningSubject, legacyLayerToBundle } from './legacy.js';
import type { SignatureCheck, TrustAnchors } from './types.js';
import { verifyBundle } from './verify-bundle.js';

/** At most this many signature referrers are listed for one manifest. */
export const MAX_SIGNATURES = 1000;
/** A legacy simple-signing payload is a few hundred bytes; anything near this is not one. */
const MAX_PAYLOAD_BYTES = 64 * 1024;

export interface VerifyOptions {
  anchors: TrustAnchors;
  /**
   * The repository (`registry/path`) a cosign simple-signing payload must name. Without it the payload's
   * docker-reference is not checked (only its manifest digest is).
   */
  expectedRepository?: string;
  /** Check every signature instead of stopping at the first that verifies. */
  all?: boolean;
  /** Look at cosign's `sha256-<hex>.sig` tag too (default true). */
  legacy?: boolean;
  limit?: number;
  signal?: AbortSignal;
}

export interface VerificationReport {
  subject: Descriptor;
  /** Every signature examined, in order; the first `ok` one is what the verdict rests on. */
  checks: SignatureCheck[];
  /** Signatures listed but not downloaded, because one had already verified. */
  unchecked: number;
}

/**
 * Finds and checks the signatures of a manifest: bundle referrers first (those naming a trusted key
 * first of all), then cosign's legacy tag. Signatures are downloaded one at a time and the search stops
 * at the first that verifies, unless `all` is set, so a verifier never fetches more than it checks.
 */
export async function verifyManifestSignatures(target: Target, subject: Descriptor, opts: VerifyOptions): Promise<VerificationReport> {
  const manifest = await fetchBytes(target, subject, undefined, opts.signal);
  const trustedIds = new Set(opts.anchors.keys.map((k) => k.id));
  const listed = await listBundleReferrers(target, subject, opts.limit ?? MAX_SIGNATURES, isSignatureReferrer);
  // Unauthenticated key names only reorder the work; every candidate is still verifiable.
  const ordered = [...listed.filter((r) => r.keyId && trustedIds.has(r.keyId)), ...listed.filter((r) => !(r.keyId && trustedIds.has(r.keyId)))];
  const checks: SignatureCheck[] = [];
  const done = (): boolean => !opts.all && checks.some((c) => c.ok);

  for (const [i, r] of ordered.entries()) {
    if (done()) return { subject, checks, unchecked: ordered.length - i };
    checks.push(await checkReferrer(target, subject, manifest, r, opts));
  }
  if (opts.legacy !== false && !done()) {
    const { tag, layers } = await legacySignatureLayers(target, subject, opts.signal);
    for (const [i, layer] of layers.entries()) {
      if (done()) return { subject, checks, unchecked: layers.length - i };
      checks.push(await checkLegacyLayer(target, subject, layer, `${tag}#${i}`, opts));
    }
  }
  return { subject, checks, unchecked: 0 };
}

async function checkReferrer(target: Target, subject: Descriptor, manifest: Buffer, r: BundleReferrer, opts: VerifyOptions): Promise<SignatureCheck> {
  const where = r.descriptor.digest;
  try {
    const bundle = parseBundle(await fetchReferrerBundle(target, r.descriptor, opts.signal), where);
    const isDsse = bundle.content.$case === 'dsseEnvelope';
    const result = verifyBundle(bundle, isDsse ? { digest: subject.digest } : { bytes: manifest }, opts.anchors);
    if (isDsse && result.statement?.predicateType !== COSIGN_SIGN_PREDICATE) {
      throw new LadingError('E_SIGNATURE_SUBJECT_MISMATCH', `${where} is an attestation (${result.statement?.predicateType}), not a signature`);
    }
    return { source: 'referrer', where, ok: true, signer: result.signer, ...(result.signedAt ? { signedAt: result.signedAt } : {}) };
  } catch (err) {
    return failed('referrer', where, err);
  }
}

async function checkLegacyLayer(target: Target, subject: Descriptor, layer: Descriptor, where: string, opts: VerifyOptions): Promise<SignatureCheck> {
  try {
    if (layer.size > MAX_PAYLOAD_BYTES) throw new LadingError('E_BUNDLE_INVALID', `${where} is ${layer.size} bytes, too large for a signature payload`);
    const payload = await fetchBytes(target, layer, MAX_PAYLOAD_BYTES, opts.signal);
    const bundle = legacyLayerToBundle({ mediaType: layer.mediaType, annotations: layer.annotations ?? {}, payload });
    const result = verifyBundle(bundle, { bytes: payload }, opts.anchors);
    checkSimpleSigningSubject(payload, subject.digest, opts.expectedRepository);
    return { source: 'legacy-tag', where, ok: true, signer: result.signer, ...(result.signedAt ? { signedAt: result.signedAt } : {}) };
  } catch (err) {
    return failed('legacy-tag', where, err);
  }
}

export interface AttestationCheck extends SignatureCheck {
  /** The statement's predicate, when the attestation verified. */
  predicate?: unknown;
}

/**
 * Finds and checks the attestations of `predicateType` about a manifest, stopping at the first that
 * verifies unless `all` is set.
 */
export async function verifyManifestAttestations(
  target: Target,
  subject: Descriptor,
  predicateType: string,
  opts: Omit<VerifyOptions, 'legacy' | 'expectedRepository'>,
): Promise<Omit<VerificationReport, 'checks'> & { checks: AttestationCheck[] }> {
  // Message signatures and attestations of other types, as listed, are not downloaded at all.
  const listed = await listBundleReferrers(
    target,
    subject,
    opts.limit ?? MAX_SIGNATURES,
    (r) => r.content !== 'message-signature' && (r.predicateType === undefined || r.predicateType === predicateType),
  );
  const checks: AttestationCheck[] = [];
  for (const [i, r] of listed.entries()) {
    if (!opts.all && checks.some((c) => c.ok)) return { subject, checks, unchecked: listed.length - i };
    const where = r.descriptor.digest;
    try {
      const bundle = parseBundle(await fetchReferrerBundle(target, r.descriptor, opts.signal), where);
      if (bundle.content.$case !== 'dsseEnvelope') continue;
      // The type is read from the payload before trusting it only to skip other kinds of attestation.
      const claimed = parseStatement(Buffer.from(bundle.content.dsseEnvelope.payload));
      if (claimed.predicateType !== predicateType) {
        // Listed as this type but stating another: altered, or mislabelled; either way not silently passed over.
        if (r.predicateType === predicateType) {
          throw new LadingError('E_BUNDLE_INVALID', `${where} is listed as ${predicateType} but its statement is ${claimed.predicateType}`);
        }
        continue;
      }
      const result = verifyBundle(bundle, { digest: subject.digest }, opts.anchors);
      checks.push({
        source: 'referrer',
        where,
        ok: true,
        signer: result.signer,
        predicateType,
        predicate: result.statement?.predicate,
        ...(result.signedAt ? { signedAt: result.signedAt } : {}),
      });
    } catch (err) {
      checks.push({ ...failed('referrer', where, err), predicateType });
    }
  }
  return { subject, checks, unchecked: 0 };
}

function failed(source: SignatureCheck['source'], where: string, err: unknown): SignatureCheck {
  const e = toLadingError(err);
  // Transport failures are not verdicts about a signature: they end the verification.
  if (e.code === 'E_NETWORK' || e.code === 'E_ABORTED' || e.code === 'E_UNAUTHORIZED' || e.code === 'E_DENIED' || e.code === 'E_TOO_MANY_REQUESTS') throw e;
  return { source, where, ok: false, code: e.code, message: e.message };
}
