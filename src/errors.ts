/**
 * One error family for the whole of lading. Codes are stable strings: scripts and library users match on
 * them, so a code is never renamed or reused for another meaning.
 */
export const ErrorCodes = {
  E_USAGE: 'the command line or an argument is malformed',
  E_REFERENCE_INVALID: 'a reference does not follow the distribution grammar',
  E_DIGEST_INVALID: 'a digest is malformed or uses an unsupported algorithm',
  E_DIGEST_MISMATCH: 'content does not hash to the digest that names it',
  E_SIZE_MISMATCH: 'content is longer or shorter than its descriptor says',
  E_RANGE_INVALID: 'a byte range or upload offset does not fit the content',
  E_TOO_LARGE: 'content is over a configured size limit',
  E_MANIFEST_INVALID: 'a manifest or index is malformed',
  E_MANIFEST_TOO_LARGE: 'a manifest is larger than the 4 MiB limit',
  E_MEDIA_TYPE_UNSUPPORTED: 'a media type is not one lading can handle here',
  E_JSON_INVALID: 'a document is not valid JSON',
  E_NOT_FOUND: 'a repository, tag, manifest or blob does not exist',
  E_UNAUTHORIZED: 'the registry wants credentials, or refused the ones given',
  E_DENIED: 'the registry refused access to the resource',
  E_TOO_MANY_REQUESTS: 'the registry kept rate-limiting after retries',
  E_REGISTRY: 'the registry answered with an error',
  E_PROTOCOL: 'the registry broke the distribution protocol',
  E_NETWORK: 'the registry could not be reached, or the connection failed',
  E_UNSAFE_PATH: 'a path would escape its destination',
  E_ARCHIVE_INVALID: 'an archive is malformed or exceeds a safety bound',
  E_LAYOUT_INVALID: 'an OCI image layout on disk is malformed',
  E_STORE_CORRUPT: 'a registry root holds damaged or inconsistent content',
  E_CREDENTIALS: 'credentials could not be read, stored or obtained',
  E_IO: 'a local file operation failed',
  E_ABORTED: 'the operation was cancelled',
  E_UNSUPPORTED: 'the operation is not supported by this target',
  E_FAMILY_INVALID: 'a family definition is malformed',
  E_FAMILY_UNKNOWN: 'no family of that name, artifact type or reference path is known',
  E_CONFIG_INVALID: "an artifact's envelope does not satisfy its family's schema",
  E_VARIANT_NOT_FOUND: 'no variant of an artifact matches the requested platform exactly',
  E_BUNDLE_CYCLE: 'bundle components refer back to a bundle being resolved',
  E_LOCK_INVALID: 'a lockfile is malformed',
  E_LOCK_MISMATCH: 'what a reference resolves to differs from the lockfile',
  E_KEY_INVALID: 'a key file is malformed, of an unsupported kind, or its passphrase is wrong',
  E_BUNDLE_INVALID: 'a signature bundle or signature layer is malformed',
  E_SIGNATURE_MISSING: 'no signature was found where one is required',
  E_SIGNATURE_INVALID: 'a signature does not verify over the content it claims to sign',
  E_SIGNATURE_SUBJECT_MISMATCH: 'a valid signature signs other content than the artifact being verified',
  E_KEY_UNTRUSTED: 'a signature was made by a key that is not trusted',
  E_CERTIFICATE_INVALID: 'a signing certificate does not chain to a trusted authority, or was not valid when used',
  E_IDENTITY_MISMATCH: "a signer's identity or OIDC issuer does not match what is trusted",
  E_TLOG_INVALID: 'a transparency-log entry, inclusion proof or promise does not verify',
  E_TIMESTAMP_INVALID: 'a signature has no verifiable timestamp, or one outside the validity of its signer',
  E_TRUSTED_ROOT_INVALID: 'a trusted root file is malformed',
  E_POLICY_INVALID: 'a trust policy file is malformed or ambiguous',
  E_POLICY_NO_MATCH: 'no trust policy scope covers the repository',
  E_POLICY_DENIED: 'the trust policy refused the artifact',
  E_INSTALL_CONFLICT: 'an install would replace something that is not the same artifact',
  E_INSTALL_NOT_FOUND: 'no such installed package or version',
  E_INSTALL_DEPENDED_ON: 'another installed package depends on the one to remove',
  E_INSTALL_STEP_FAILED: 'an install step exited with an error',
  E_SCRIPTS_NOT_ALLOWED: 'an artifact has install steps, and running them was not allowed',
  E_PACK_INCOMPATIBLE: "a pack's SDK range does not include the host SDK version",
  E_PACK_CONFLICT: 'a pack provides classes that another pack or the host already provides',
  E_STEP_CYCLE: 'install steps depend on each other in a cycle',
  E_INSTALL_STATE_INVALID: 'the installed-state store is malformed',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface LadingErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Machine-readable facts about the failure (never credentials). */
  details?: Record<string, unknown>;
}

export class LadingError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: LadingErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LadingError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  toJSON(): { code: ErrorCode; message: string; hint?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isLadingError(err: unknown, code?: ErrorCode): err is LadingError {
  return err instanceof LadingError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a LadingError, keeping LadingErrors as they are. */
export function toLadingError(err: unknown, fallback: ErrorCode = 'E_IO'): LadingError {
  if (err instanceof LadingError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new LadingError('E_ABORTED', 'the operation was cancelled', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new LadingError(fallback, message, { cause: err });
}
