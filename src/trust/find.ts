import { isReferrerLister, type Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { LadingError, isLadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { parseManifest } from '../oci/manifest.js';
import { legacySignatureTag, SIGNATURE_KEY_ANNOTATION } from './attach.js';
import { MAX_BUNDLE_BYTES } from './bundle.js';
import { BUNDLE_CONTENT_ANNOTATION, BUNDLE_MEDIA_TYPE, BUNDLE_PREDICATE_TYPE_ANNOTATION } from './types.js';

/** cosign 2.x+ signs images as a DSSE statement of this type; such a bundle is a signature, not an attestation. */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

/** A bundle referrer as listed: nothing about it is downloaded or trusted yet. */
export interface BundleReferrer {
  descriptor: Descriptor;
  /** From the listing's annotations: what the bundle says it holds (unauthenticated). */
  content?: string;
  predicateType?: string;
  keyId?: string;
}

/**
 * Lists the sigstore bundle referrers of `subject` (referrers API, else the tag schema) that `keep`
 * accepts; at most `limit` of them, so that others' attachments cannot crowd out what is looked for.
 */
export async function listBundleReferrers(
  target: Target,
  subject: Descriptor,
  limit: number,
  keep: (r: BundleReferrer) => boolean = () => true,
): Promise<BundleReferrer[]> {
  if (!isReferrerLister(target)) {
    throw new LadingError('E_UNSUPPORTED', 'this target cannot list referrers', { hint: 'verify against a registry or an OCI layout' });
  }
  const out: BundleReferrer[] = [];
  for await (const d of target.referrers(subject, BUNDLE_MEDIA_TYPE)) {
    if (d.artifactType !== BUNDLE_MEDIA_TYPE) continue;
    const a = d.annotations ?? {};
    const r: BundleReferrer = {
      descriptor: d,
      ...(a[BUNDLE_CONTENT_ANNOTATION] ? { content: a[BUNDLE_CONTENT_ANNOTATION] } : {}),
      ...(a[BUNDLE_PREDICATE_TYPE_ANNOTATION] ? { predicateType: a[BUNDLE_PREDICATE_TYPE_ANNOTATION] } : {}),
      ...(a[SIGNATURE_KEY_ANNOTATION] ? { keyId: a[SIGNATURE_KEY_ANNOTATION] } : {}),
    };
    if (!keep(r)) continue;
    if (out.length >= limit) {
      throw new LadingError('E_TOO_LARGE', `${subject.digest} has more than ${limit} signature referrers`, {
        hint: 'raise the limit only if that many signatures are expected',
        details: { limit },
      });
    }
    out.push(r);
  }
  return out;
}

/** Whether a listed bundle is (as far as its listing says) a signature rather than an attestation. */
export function isSignatureReferrer(r: BundleReferrer): boolean {
  if (r.content === 'message-signature') return true;
  if (r.predicateType !== undefined) return r.predicateType === COSIGN_SIGN_PREDICATE;
  // Listings without annotations say nothing; the bundle itself decides after download.
  return r.content === undefined;
}

/** Downloads the bundle a referrer manifest carries: its one layer of the bundle media type. */
export async function fetchReferrerBundle(target: Target, referrer: Descriptor, signal?: AbortSignal): Promise<Buffer> {
  const parsed = parseManifest(await fetchBytes(target, referrer, undefined, signal), referrer.mediaType);
  if (parsed.kind !== 'manifest') throw new LadingError('E_BUNDLE_INVALID', `referrer ${referrer.digest} is not an image manifest`);
  const layers = parsed.manifest.layers.filter((l) => l.mediaType === BUNDLE_MEDIA_TYPE);
  if (layers.length !== 1) {
    throw new LadingError('E_BUNDLE_INVALID', `referrer ${referrer.digest} has ${layers.length} bundle layers, not one`);
  }
  const layer = layers[0]!;
  if (layer.size > MAX_BUNDLE_BYTES) {
    throw new LadingError('E_BUNDLE_INVALID', `the bundle in ${referrer.digest} is ${layer.size} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  }
  return fetchBytes(target, layer, MAX_BUNDLE_BYTES, signal);
}

/** cosign appends one layer per signature; more than this many is not a signature list anyone made. */
export const MAX_LEGACY_SIGNATURES = 1000;

/** The layers of cosign's `.sig` manifest for `subject`, or none when the tag does not exist. */
export async function legacySignatureLayers(target: Target, subject: Descriptor, signal?: AbortSignal): Promise<{ tag: string; layers: Descriptor[] }> {
  const tag = legacySignatureTag(subject.digest);
  let desc: Descriptor;
  try {
    desc = await target.resolve(tag);
  } catch (err) {
    if (isLadingError(err, 'E_NOT_FOUND')) return { tag, layers: [] };
    throw err;
  }
  const parsed = parseManifest(await fetchBytes(target, desc, undefined, signal), desc.mediaType);
  if (parsed.kind !== 'manifest') throw new LadingError('E_BUNDLE_INVALID', `${tag} does not hold a signature manifest`);
  if (parsed.manifest.layers.length > MAX_LEGACY_SIGNATURES) {
    throw new LadingError('E_TOO_LARGE', `${tag} has ${parsed.manifest.layers.length} signature layers, more than ${MAX_LEGACY_SIGNATURES}`);
  }
  return { tag, layers: parsed.manifest.layers };
}
