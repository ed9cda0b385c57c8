import type { KeyObject } from 'node:crypto';
import type { ErrorCode } from '../errors.js';

/** The artifactType and layer media type of a sigstore bundle attached as an OCI 1.1 referrer. */
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** cosign's simple-signing payload: one layer per signature in a `sha256-<hex>.sig` manifest. */
export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const COSIGN_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
export const COSIGN_CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
export const COSIGN_CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';
/** Annotations on a bundle referrer manifest, as cosign writes them, so that listings tell kinds apart. */
export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';
export const BUNDLE_PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';

/** A public key a verifier trusts, named so that reports can say which one verified. */
export interface TrustedKey {
  /** `sha256:<hex>` of the key's DER SubjectPublicKeyInfo. */
  id: string;
  /** Where it came from (a file path, or `inline`); for reports only. */
  source: string;
  key: KeyObject;
}

/**
 * Who may have signed, for keyless (certificate) signatures. The issuer and the subject are each matched
 * either exactly or by a pattern that must match the whole string (it is anchored whatever it says).
 */
export interface IdentityMatcher {
  issuer?: string;
  issuerPattern?: string;
  subject?: string;
  subjectPattern?: string;
}

/** What a verification trusts. Keyed signatures need `keys`; keyless ones need `identities` and a root. */
export interface TrustAnchors {
  keys: TrustedKey[];
  identities: IdentityMatcher[];
  /** Fulcio CAs, Rekor and CT log keys, TSAs. Defaults to the public-good root shipped with lading. */
  trustedRoot?: TrustedRootMaterial;
}

/** A loaded trusted root (opaque to callers; built by `loadTrustedRoot`). */
export interface TrustedRootMaterial {
  readonly source: string;
  /** @internal the sigstore trust material minus the key finder */
  readonly material: unknown;
}

export type Signer =
  | { kind: 'key'; keyId: string; source: string }
  | { kind: 'certificate'; subject: string; issuer: string };

/** The outcome of checking one signature; a report is a list of these. */
export interface SignatureCheck {
  /** How the signature was found. */
  source: 'referrer' | 'legacy-tag' | 'bundle-file';
  /** Where: the referrer manifest digest, or `<tag>#<layer index>`, or a file path. */
  where: string;
  ok: boolean;
  code?: ErrorCode;
  message?: string;
  signer?: Signer;
  /** Verified signing time (transparency log or TSA), ISO 8601, when the signature has one. */
  signedAt?: string;
  /** For attestations: the in-toto predicate type. */
  predicateType?: string;
}
