import { createHash, type KeyObject } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { LadingError, isLadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf, parseDigest } from '../oci/digest.js';
import { buildImageManifest, parseManifest } from '../oci/manifest.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { dsseBundle, messageSignatureBundle } from './bundle.js';
import { inTotoStatement, pae } from './dsse.js';
import { keyId, signBytes } from './keys.js';
import { simpleSigningPayload } from './legacy.js';
import {
  BUNDLE_CONTENT_ANNOTATION,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_PREDICATE_TYPE_ANNOTATION,
  COSIGN_SIGNATURE_ANNOTATION,
  IN_TOTO_PAYLOAD_TYPE,
  SIMPLE_SIGNING_MEDIA_TYPE,
} from './types.js';

/**
 * Names the signing key on the referrer manifest. It is unauthenticated and only decides which
 * signatures a verifier downloads first: the key that verifies is always one the verifier trusts.
 */
export const SIGNATURE_KEY_ANNOTATION = 'dev.lading.signature.key';

/** cosign's legacy signature tag for a manifest digest: `sha256-<hex>.sig`. */
export function legacySignatureTag(digest: string): string {
  const d = parseDigest(digest);
  return `${d.algorithm}-${d.encoded}.sig`;
}

export interface SignOptions {
  key: KeyObject;
  /** Also write cosign's `sha256-<hex>.sig` simple-signing form, naming this repository (`registry/path`). */
  legacy?: { dockerReference: string };
  annotations?: Record<string, string>;
  signal?: AbortSignal;
}

export interface SignResult {
  subject: Descriptor;
  /** The bundle referrer manifest. */
  referrer: Descriptor;
  /** The `.sig` manifest, when a legacy signature was written. */
  legacy?: { tag: string; descriptor: Descriptor };
  keyId: string;
}

/**
 * Signs a manifest: a sigstore bundle v0.3 whose message signature covers the manifest's bytes (so
 * its message digest is the manifest digest), attached as a referrer of the manifest.
 */
export async function signManifest(target: Target, subject: Descriptor, opts: SignOptions): Promise<SignResult> {
  const manifest = await fetchBytes(target, subject, undefined, opts.signal);
  if (parseDigest(subject.digest).algorithm !== 'sha256') {
    throw new LadingError('E_UNSUPPORTED', `cannot sign ${subject.digest}: sigstore message signatures cover sha256 digests`, {
      hint: 'push the manifest with a sha256 digest',
    });
  }
  const id = keyId(opts.key);
  const signature = signBytes(opts.key, manifest);
  const bundle = messageSignatureBundle({
    artifactDigest: createHash('sha256').update(manifest).digest(),
    signature,
    keyHint: id,
  });
  const referrer = await attachBundle(target, subject, bundle, {
    [BUNDLE_CONTENT_ANNOTATION]: 'message-signature',
    [SIGNATURE_KEY_ANNOTATION]: id,
    ...opts.annotations,
  });
  const result: SignResult = { subject, referrer, keyId: id };
  if (opts.legacy) {
    const payload = simpleSigningPayload(opts.legacy.dockerReference, subject.digest);
    result.legacy = await appendLegacySignature(target, subject, payload, signBytes(opts.key, payload), opts.signal);
  }
  return result;
}

export interface AttestOptions {
  key: KeyObject;
  predicateType: string;
  predicate: unknown;
  /** The in-toto subject name; cosign uses the repository. */
  subjectName: string;
  annotations?: Record<string, string>;
  signal?: AbortSignal;
}

/** Signs an in-toto statement about a manifest (DSSE) and attaches the bundle as its referrer. */
export async function attestManifest(target: Target, subject: Descriptor, opts: AttestOptions): Promise<SignResult> {
  const d = parseDigest(subject.digest);
  const payload = inTotoStatement({
    subjects: [{ name: opts.subjectName, digest: { [d.algorithm]: d.encoded } }],
    predicateType: opts.predicateType,
    predicate: opts.predicate,
  });
  const id = keyId(opts.key);
  const bundle = dsseBundle({
    payload,
    payloadType: IN_TOTO_PAYLOAD_TYPE,
    signature: signBytes(opts.key, pae(IN_TOTO_PAYLOAD_TYPE, payload)),
    keyHint: id,
  });
  const referrer = await attachBundle(target, subject, bundle, {
    [BUNDLE_CONTENT_ANNOTATION]: 'dsse-envelope',
    [BUNDLE_PREDICATE_TYPE_ANNOTATION]: opts.predicateType,
    [SIGNATURE_KEY_ANNOTATION]: id,
    ...opts.annotations,
  });
  return { subject, referrer, keyId: id };
}

/** Pushes a bundle as the single layer of a referrer manifest of `subject`. */
export async function attachBundle(target: Target, subject: Descriptor, bundle: object, annotations: Record<string, string>): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(bundle));
  const layer: Descriptor = { mediaType: BUNDLE_MEDIA_TYPE, digest: digestOf(bytes), size: bytes.length };
  await pushIfMissing(target, { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size }, Buffer.from('{}'));
  await pushIfMissing(target, layer, bytes);
  const built = buildImageManifest({
    config: { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size },
    layers: [layer],
    artifactType: BUNDLE_MEDIA_TYPE,
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { 'org.opencontainers.image.created': new Date().toISOString(), ...annotations },
  });
  await target.push(built.descriptor, Readable.from([built.bytes]));
  return built.descriptor;
}

/**
 * Adds one simple-signing layer to the `.sig` manifest of `subject`, creating it if needed. Like cosign,
 * this is a read-modify-write of the tag: two signers at the same moment can lose one layer.
 */
async function appendLegacySignature(
  target: Target,
  subject: Descriptor,
  payload: Buffer,
  signature: Buffer,
  signal?: AbortSignal,
): Promise<{ tag: string; descriptor: Descriptor }> {
  const tag = legacySignatureTag(subject.digest);
  let layers: Descriptor[] = [];
  try {
    const existing = await target.resolve(tag);
    const parsed = parseManifest(await fetchBytes(target, existing, undefined, signal), existing.mediaType);
    if (parsed.kind !== 'manifest') throw new LadingError('E_MANIFEST_INVALID', `${tag} does not hold a signature manifest`);
    layers = parsed.manifest.layers;
  } catch (err) {
    if (!isLadingError(err, 'E_NOT_FOUND')) throw err;
  }
  const layer: Descriptor = {
    mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
    digest: digestOf(payload),
    size: payload.length,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signature.toString('base64') },
  };
  await pushIfMissing(target, layer, payload);
  layers = [...layers, layer];
  // The image config cosign writes: an empty image whose rootfs lists the signature layers.
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const configDesc: Descriptor = { mediaType: MediaType.ImageConfig, digest: digestOf(config), size: config.length };
  await pushIfMissing(target, configDesc, config);
  const built = buildImageManifest({ config: configDesc, layers });
  await target.push(built.descriptor, Readable.from([built.bytes]));
  await target.tag(built.descriptor, tag);
  return { tag, descriptor: built.descriptor };
}

async function pushIfMissing(target: Target, desc: Descriptor, bytes: Buffer): Promise<void> {
  if (await target.exists(desc)) return;
  await target.push(desc, Readable.from([bytes]));
}
