import { bundleFromJSON, ValidationError, type Bundle } from '@sigstore/bundle';
import { LadingError } from '../errors.js';
import { BUNDLE_MEDIA_TYPE } from './types.js';

export type { Bundle } from '@sigstore/bundle';

/** Real bundles are a few kilobytes (a certificate chain and a log entry); the cap bounds parsing work. */
export const MAX_BUNDLE_BYTES = 1024 * 1024;

export function parseBundle(bytes: Uint8Array, where: string): Bundle {
  if (bytes.byteLength > MAX_BUNDLE_BYTES) {
    throw new LadingError('E_BUNDLE_INVALID', `${where}: the bundle is ${bytes.byteLength} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new LadingError('E_BUNDLE_INVALID', `${where}: the bundle is not JSON`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new LadingError('E_BUNDLE_INVALID', `${where}: the bundle is not a JSON object`);
  }
  return bundleFromObject(doc, where);
}

/** Validates an already-parsed bundle document (also used for bundles lading assembles itself). */
export function bundleFromObject(doc: unknown, where: string): Bundle {
  try {
    return bundleFromJSON(doc);
  } catch (err) {
    const fields = err instanceof ValidationError && err.fields?.length ? ` (${err.fields.join(', ')})` : '';
    throw new LadingError('E_BUNDLE_INVALID', `${where}: not a valid sigstore bundle: ${(err as Error).message}${fields}`, {
      hint: 'a sigstore bundle is the JSON that cosign and sigstore clients write (mediaType application/vnd.dev.sigstore.bundle…)',
      cause: err,
    });
  }
}

/**
 * A keyed v0.3 bundle for a message signature. It carries no log entry: lading's keyed signatures are
 * verified against the key alone, as `cosign verify --key … --insecure-ignore-tlog` would.
 */
export function messageSignatureBundle(o: { artifactDigest: Buffer; signature: Buffer; keyHint: string }): object {
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: o.keyHint }, tlogEntries: [] },
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: o.artifactDigest.toString('base64') },
      signature: o.signature.toString('base64'),
    },
  };
}

export function dsseBundle(o: { payload: Buffer; payloadType: string; signature: Buffer; keyHint: string }): object {
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: o.keyHint }, tlogEntries: [] },
    dsseEnvelope: {
      payload: o.payload.toString('base64'),
      payloadType: o.payloadType,
      signatures: [{ sig: o.signature.toString('base64'), keyid: '' }],
    },
  };
}

export function bundleKind(b: Bundle): 'message-signature' | 'dsse' {
  return b.content.$case === 'dsseEnvelope' ? 'dsse' : 'message-signature';
}
