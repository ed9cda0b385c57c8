import { createHash } from 'node:crypto';
import type { Bundle, MessageSignature } from '@sigstore/bundle';
import { HashAlgorithm } from '@sigstore/protobuf-specs';
import { PolicyError, toSignedEntity, VerificationError, Verifier, type SignedEntity, type TrustMaterial } from '@sigstore/verify';
import { LadingError, type ErrorCode } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { parseStatement, type ParsedStatement } from './dsse.js';
import { matchIdentity } from './identity.js';
import { defaultTrustedRoot, trustMaterialOf } from './trusted-root.js';
import type { SignatureCheck, Signer, TrustAnchors, TrustedKey } from './types.js';
import { IN_TOTO_PAYLOAD_TYPE } from './types.js';

export type ArtifactInput = { bytes: Buffer } | { digest: string };

export interface BundleVerification {
  signer: Signer;
  /** The earliest verified timestamp, ISO 8601. */
  signedAt?: string;
  /** For DSSE bundles: the verified in-toto statement. */
  statement?: ParsedStatement;
}

/** Key-only verification: a log entry, when present, is still verified; none is required. */
const KEYED_OPTIONS = { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 };
/** Unspecified is refused rather than guessed: the digest must say what it is. */
const HASH_OF_ALGORITHM: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.SHA2_256]: 'sha256',
  [HashAlgorithm.SHA2_384]: 'sha384',
  [HashAlgorithm.SHA2_512]: 'sha512',
};

const LIBRARY_CODES: Record<string, ErrorCode> = {
  SIGNATURE_ERROR: 'E_SIGNATURE_INVALID',
  PUBLIC_KEY_ERROR: 'E_KEY_UNTRUSTED',
  CERTIFICATE_ERROR: 'E_CERTIFICATE_INVALID',
  TIMESTAMP_ERROR: 'E_TIMESTAMP_INVALID',
  TLOG_ERROR: 'E_TLOG_INVALID',
  TLOG_INCLUSION_PROOF_ERROR: 'E_TLOG_INVALID',
  TLOG_INCLUSION_PROMISE_ERROR: 'E_TLOG_INVALID',
  TLOG_MISSING_INCLUSION_ERROR: 'E_TLOG_INVALID',
  TLOG_BODY_ERROR: 'E_TLOG_INVALID',
};

/** Turns whatever the sigstore library threw into a LadingError that keeps its message. */
function fromLibrary(err: unknown, fallback: ErrorCode): LadingError {
  if (err instanceof LadingError) return err;
  if (err instanceof PolicyError) return new LadingError('E_IDENTITY_MISMATCH', err.message, { cause: err });
  if (err instanceof VerificationError) {
    return new LadingError(LIBRARY_CODES[err.code] ?? fallback, err.message, { cause: err, details: { libraryCode: err.code } });
  }
  // Anything else is the library tripping over malformed material (an unparsable certificate, SCT, …).
  return new LadingError(fallback, err instanceof Error ? err.message : String(err), { cause: err });
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function checkMessageDigest(ms: MessageSignature, artifact: ArtifactInput): Buffer {
  if (!('bytes' in artifact)) {
    throw new LadingError('E_USAGE', 'a message signature needs the file: it signs the bytes, not a digest', {
      hint: 'pass the artifact file itself rather than its digest',
    });
  }
  const md = ms.messageDigest;
  const name = md ? HASH_OF_ALGORITHM[md.algorithm] : undefined;
  if (!md || !name) throw new LadingError('E_BUNDLE_INVALID', `the bundle's message digest uses an unsupported algorithm (${md?.algorithm})`);
  const signed = `${name}:${hex(md.digest)}`;
  const actual = `${name}:${createHash(name).update(artifact.bytes).digest('hex')}`;
  if (signed !== actual) {
    throw new LadingError('E_SIGNATURE_SUBJECT_MISMATCH', `the signature is over ${signed}, not this file (${actual})`, {
      details: { signed, actual },
    });
  }
  return artifact.bytes;
}

/** The statement must name the artifact; digests are compared per algorithm, case-insensitively. */
function checkStatementSubject(statement: ParsedStatement, artifact: ArtifactInput): void {
  const wanted = new Map<string, string>();
  if ('bytes' in artifact) {
    const algs = new Set(['sha256']);
    for (const s of statement.subjects) for (const a of Object.keys(s.digest)) if (a === 'sha512' || a === 'sha384') algs.add(a);
    for (const a of algs) wanted.set(a, createHash(a).update(artifact.bytes).digest('hex'));
  } else {
    let d;
    try {
      d = parseDigest(artifact.digest);
    } catch (err) {
      throw new LadingError('E_USAGE', `${artifact.digest} is not a digest`, { cause: err });
    }
    wanted.set(d.algorithm, d.encoded.toLowerCase());
  }
  const hit = statement.subjects.some((s) => Object.entries(s.digest).some(([a, h]) => wanted.get(a) === h.toLowerCase()));
  if (!hit) {
    const named = statement.subjects.flatMap((s) => Object.entries(s.digest).map(([a, h]) => `${a}:${h}`));
    const ours = [...wanted].map(([a, h]) => `${a}:${h}`);
    throw new LadingError('E_SIGNATURE_SUBJECT_MISMATCH', `the attestation is about ${named.join(', ')}, not ${ours.join(' / ')}`, {
      details: { subjects: named, artifact: ours },
    });
  }
}

function toEntity(bundle: Bundle, artifact: Buffer | undefined): SignedEntity {
  try {
    return toSignedEntity(bundle, artifact);
  } catch (err) {
    const code = bundle.verificationMaterial.content.$case === 'publicKey' ? 'E_BUNDLE_INVALID' : 'E_CERTIFICATE_INVALID';
    throw fromLibrary(err, code);
  }
}

function earliest(entity: SignedEntity): string | undefined {
  const times: number[] = [];
  for (const t of entity.timestamps) {
    if (t.$case === 'transparency-log') times.push(Number(t.tlogEntry.integratedTime) * 1000);
    else times.push(t.timestamp.signingTime.getTime());
  }
  const finite = times.filter((n) => Number.isFinite(n) && n > 0);
  return finite.length ? new Date(Math.min(...finite)).toISOString() : undefined;
}

function keyMatchesHint(k: TrustedKey, hint: string): boolean {
  if (hint === '') return false;
  const hexId = k.id.slice('sha256:'.length);
  // Other clients name keys by the bare hex or base64 of the same digest.
  return hint === k.id || hint === hexId || hint === Buffer.from(hexId, 'hex').toString('base64');
}

function verifyKeyed(entity: SignedEntity, hint: string, anchors: TrustAnchors, material: TrustMaterial): Signer {
  if (anchors.keys.length === 0) {
    throw new LadingError('E_KEY_UNTRUSTED', 'the signature was made with a key, and no key is trusted', { hint: 'pass --key with the public key to trust' });
  }
  const failures: { key: TrustedKey; err: LadingError }[] = [];
  for (const key of anchors.keys) {
    const verifier = new Verifier({ ...material, publicKey: () => ({ publicKey: key.key, validFor: () => true }) }, KEYED_OPTIONS);
    try {
      verifier.verify(entity);
      return { kind: 'key', keyId: key.id, source: key.source };
    } catch (err) {
      failures.push({ key, err: fromLibrary(err, 'E_SIGNATURE_INVALID') });
    }
  }
  // A failure that is not about the key (a broken log entry, say) is the same whichever key was tried.
  const other = failures.find((f) => f.err.code !== 'E_SIGNATURE_INVALID');
  if (other) throw other.err;
  // The hint is unauthenticated: it only decides whether to call this a bad signature or an unknown key. A
  // hint naming a trusted key (lading's own bundles carry one) makes a failure a precise tamper signal.
  const named = anchors.keys.find((k) => keyMatchesHint(k, hint));
  if (named) {
    throw new LadingError('E_SIGNATURE_INVALID', `the signature does not verify with the trusted key ${named.id} (${named.source}) that it names`, {
      details: { keyId: named.id },
    });
  }
  // Without a hint (cosign's legacy layers carry none) nothing says which key was meant: most often the
  // signature is simply another key's, so it is not reported as a forgery.
  const message =
    hint === ''
      ? `the signature verifies with none of the ${anchors.keys.length} trusted key(s): it was made by another key, or altered`
      : `the signature was not made by any of the ${anchors.keys.length} trusted key(s)`;
  throw new LadingError('E_KEY_UNTRUSTED', message, {
    hint: 'pass --key with the signer\'s public key if you trust it',
    details: { keyHint: hint || undefined, trusted: anchors.keys.map((k) => k.id) },
  });
}

function verifyKeyless(entity: SignedEntity, anchors: TrustAnchors, material: TrustMaterial): Signer {
  const verifier = new Verifier({ ...material, publicKey: noKeys });
  let identity;
  try {
    identity = verifier.verify(entity).identity;
  } catch (err) {
    throw fromLibrary(err, 'E_CERTIFICATE_INVALID');
  }
  const subject = identity?.subjectAlternativeName ?? '';
  const issuer = identity?.extensions?.issuer ?? '';
  if (anchors.identities.length === 0) {
    throw new LadingError('E_IDENTITY_MISMATCH', `signed by ${subject} (issuer ${issuer}), and no identity is trusted`, {
      hint: 'pass --certificate-identity and --certificate-oidc-issuer naming the signer you trust',
      details: { subject, issuer },
    });
  }
  if (!subject || !issuer || !anchors.identities.some((m) => matchIdentity({ subject, issuer }, m))) {
    throw new LadingError('E_IDENTITY_MISMATCH', `signed by ${subject || '(no subject)'} (issuer ${issuer || 'unknown'}), which no trusted identity matches`, {
      details: { subject, issuer },
    });
  }
  return { kind: 'certificate', subject, issuer };
}

function noKeys(hint: string): never {
  throw new VerificationError({ code: 'PUBLIC_KEY_ERROR', message: `no key is trusted for hint ${hint}` });
}

/**
 * Verifies a bundle over an artifact: the signature, its key or certificate against the anchors, any log
 * entries and timestamps, and what the signature claims to cover. Throws a LadingError on any failure.
 */
export function verifyBundle(bundle: Bundle, artifact: ArtifactInput, anchors: TrustAnchors): BundleVerification {
  let bytes: Buffer | undefined;
  if (bundle.content.$case === 'messageSignature') bytes = checkMessageDigest(bundle.content.messageSignature, artifact);
  const entity = toEntity(bundle, bytes);
  const material = trustMaterialOf(anchors.trustedRoot ?? defaultTrustedRoot());
  const vm = bundle.verificationMaterial.content;
  const signer = vm.$case === 'publicKey' ? verifyKeyed(entity, vm.publicKey.hint, anchors, material) : verifyKeyless(entity, anchors, material);
  const signedAt = earliest(entity);
  const result: BundleVerification = { signer, ...(signedAt ? { signedAt } : {}) };
  if (bundle.content.$case === 'dsseEnvelope') {
    const env = bundle.content.dsseEnvelope;
    if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
      throw new LadingError('E_BUNDLE_INVALID', `the signed payload is ${env.payloadType}, not an in-toto statement (${IN_TOTO_PAYLOAD_TYPE})`);
    }
    result.statement = parseStatement(Buffer.from(env.payload));
    checkStatementSubject(result.statement, artifact);
  }
  return result;
}

/** Runs a verification and records its outcome as one line of a report; non-LadingErrors propagate. */
export function signatureCheck(
  fn: () => BundleVerification,
  source: SignatureCheck['source'],
  where: string,
): SignatureCheck {
  try {
    const r = fn();
    return {
      source,
      where,
      ok: true,
      signer: r.signer,
      ...(r.signedAt ? { signedAt: r.signedAt } : {}),
      ...(r.statement ? { predicateType: r.statement.predicateType } : {}),
    };
  } catch (err) {
    if (!(err instanceof LadingError)) throw err;
    return { source, where, ok: false, code: err.code, message: err.message };
  }
}
