import { createHash } from 'node:crypto';
import { BUNDLE_V01_MEDIA_TYPE, type Bundle } from '@sigstore/bundle';
import { LadingError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { parseReference } from '../oci/reference.js';
import { bundleFromObject, MAX_BUNDLE_BYTES } from './bundle.js';
import {
  COSIGN_BUNDLE_ANNOTATION,
  COSIGN_CERTIFICATE_ANNOTATION,
  COSIGN_CHAIN_ANNOTATION,
  COSIGN_SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
} from './types.js';

const SIMPLE_SIGNING_TYPE = 'cosign container image signature';
/** The header of containers/image's on-disk form of a cosign signature (`signature-N` in a dir: image). */
const SIGSTORE_JSON_PREFIX = Buffer.from('\x00sigstore-json\n', 'latin1');

export interface SimpleSigning {
  dockerReference: string;
  manifestDigest: string;
  optional: unknown;
}

export interface LegacyLayer {
  mediaType: string;
  annotations: Record<string, string>;
  payload: Buffer;
}

/** Byte-for-byte what cosign signs, so that cosign verifies lading's legacy signatures and vice versa. */
export function simpleSigningPayload(dockerReference: string, manifestDigest: string): Buffer {
  const doc = {
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': manifestDigest },
      type: SIMPLE_SIGNING_TYPE,
    },
    optional: null,
  };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: string[], where: string): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  // Unknown critical fields could carry constraints we would silently ignore.
  if (extra.length > 0) throw badPayload(`unknown field ${where}.${extra[0]}`);
}

function badPayload(why: string): LadingError {
  return new LadingError('E_BUNDLE_INVALID', `not a cosign simple-signing payload: ${why}`);
}

export function parseSimpleSigning(payload: Buffer): SimpleSigning {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    throw badPayload('it is not JSON');
  }
  if (!isRecord(doc)) throw badPayload('it is not a JSON object');
  onlyKeys(doc, ['critical', 'optional'], '');
  const critical = doc.critical;
  if (!isRecord(critical)) throw badPayload('"critical" is missing');
  onlyKeys(critical, ['identity', 'image', 'type'], 'critical');
  if (critical.type !== SIMPLE_SIGNING_TYPE) throw badPayload(`critical.type is ${JSON.stringify(critical.type)}`);
  const identity = critical.identity;
  const image = critical.image;
  if (!isRecord(identity) || typeof identity['docker-reference'] !== 'string') throw badPayload('critical.identity.docker-reference is missing');
  if (!isRecord(image) || typeof image['docker-manifest-digest'] !== 'string') throw badPayload('critical.image.docker-manifest-digest is missing');
  onlyKeys(identity, ['docker-reference'], 'critical.identity');
  onlyKeys(image, ['docker-manifest-digest'], 'critical.image');
  const manifestDigest = image['docker-manifest-digest'];
  if (!isDigest(manifestDigest)) throw badPayload(`critical.image.docker-manifest-digest ${JSON.stringify(manifestDigest)} is not a digest`);
  return { dockerReference: identity['docker-reference'], manifestDigest, optional: doc.optional ?? null };
}

/** `registry/path` of a reference, normalized; undefined when it does not parse. */
function repositoryOf(ref: string): string | undefined {
  try {
    const r = parseReference(ref);
    return `${r.registry}/${r.repository}`;
  } catch {
    return undefined;
  }
}

/**
 * Whether a signed docker-reference names the expected repository. Whole normalized names are compared,
 * so `x/repo` never matches `x/repo-evil` or `evil/x/repo`; the signed tag or digest does not matter
 * because the manifest digest is what binds the signature to content.
 */
export function matchDockerReference(signed: string, expectedRepository: string): boolean {
  const a = repositoryOf(signed);
  const b = repositoryOf(expectedRepository);
  return a !== undefined && a === b;
}

/**
 * Checks what a verified simple-signing payload claims: the manifest it signs and, when one is expected,
 * the repository. Without `expectedRepository` the docker-reference is not checked.
 */
export function checkSimpleSigningSubject(payload: Buffer, manifestDigest: string, expectedRepository?: string): SimpleSigning {
  const s = parseSimpleSigning(payload);
  if (s.manifestDigest !== manifestDigest) {
    throw new LadingError('E_SIGNATURE_SUBJECT_MISMATCH', `the signature is for manifest ${s.manifestDigest}, not ${manifestDigest}`, {
      details: { signed: s.manifestDigest, expected: manifestDigest },
    });
  }
  if (expectedRepository !== undefined && !matchDockerReference(s.dockerReference, expectedRepository)) {
    throw new LadingError('E_IDENTITY_MISMATCH', `the signature names ${s.dockerReference}, not ${expectedRepository}`, {
      hint: 'a cosign signature is bound to the repository it was made for; copy it only together with a re-signature',
      details: { signed: s.dockerReference, expected: expectedRepository },
    });
  }
  return s;
}

function pemBlocksToBase64Der(pem: string, what: string): string[] {
  const blocks = [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => m[1]!.replace(/\s+/g, ''));
  if (blocks.length === 0 || blocks.some((b) => !/^[A-Za-z0-9+/]+={0,2}$/.test(b))) {
    throw new LadingError('E_BUNDLE_INVALID', `the ${what} annotation is not PEM certificates`);
  }
  return blocks;
}

function base64Field(value: unknown, what: string): string {
  // Line breaks are tolerated because cosign's decoder ignores them and some signers wrap at 76 columns.
  const compact = typeof value === 'string' ? value.replace(/[\r\n]/g, '') : '';
  if (compact === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
    throw new LadingError('E_BUNDLE_INVALID', `${what} is missing or not base64`);
  }
  return compact;
}

/** cosign's `dev.sigstore.cosign/bundle` (a Rekor SET and entry) as a sigstore bundle log entry. */
function tlogEntryFromAnnotation(text: string): object {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new LadingError('E_BUNDLE_INVALID', `the ${COSIGN_BUNDLE_ANNOTATION} annotation is not JSON`);
  }
  const p = isRecord(doc) && isRecord(doc.Payload) ? doc.Payload : undefined;
  if (!isRecord(doc) || !p) throw new LadingError('E_BUNDLE_INVALID', `the ${COSIGN_BUNDLE_ANNOTATION} annotation has no Payload`);
  const body = base64Field(p.body, `${COSIGN_BUNDLE_ANNOTATION} Payload.body`);
  const set = base64Field(doc.SignedEntryTimestamp, `${COSIGN_BUNDLE_ANNOTATION} SignedEntryTimestamp`);
  if (typeof p.logID !== 'string' || !/^[0-9a-f]{64}$/i.test(p.logID)) {
    throw new LadingError('E_BUNDLE_INVALID', `${COSIGN_BUNDLE_ANNOTATION} Payload.logID is not a hex key id`);
  }
  if (!Number.isSafeInteger(p.integratedTime) || !Number.isSafeInteger(p.logIndex)) {
    throw new LadingError('E_BUNDLE_INVALID', `${COSIGN_BUNDLE_ANNOTATION} Payload.integratedTime or logIndex is not an integer`);
  }
  // The entry's kind is whatever the log recorded; the verifier checks the body against it.
  let kind = 'hashedrekord';
  let version = '0.0.1';
  try {
    const b: unknown = JSON.parse(Buffer.from(body, 'base64').toString('utf8'));
    if (isRecord(b) && typeof b.kind === 'string' && typeof b.apiVersion === 'string') {
      kind = b.kind;
      version = b.apiVersion;
    }
  } catch {
    // Left to the verifier, which reports a body it cannot read as a log error.
  }
  return {
    logIndex: String(p.logIndex),
    logId: { keyId: Buffer.from(p.logID, 'hex').toString('base64') },
    kindVersion: { kind, version },
    integratedTime: String(p.integratedTime),
    inclusionPromise: { signedEntryTimestamp: set },
    canonicalizedBody: body,
  };
}

/** A cosign legacy signature layer as a v0.1 sigstore bundle over the payload bytes (the artifact). */
export function legacyLayerToBundle(o: LegacyLayer): Bundle {
  if (o.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) {
    throw new LadingError('E_BUNDLE_INVALID', `not a signature: the layer is ${o.mediaType}, not ${SIMPLE_SIGNING_MEDIA_TYPE}`);
  }
  const signature = base64Field(o.annotations[COSIGN_SIGNATURE_ANNOTATION], `the ${COSIGN_SIGNATURE_ANNOTATION} annotation`);
  const cert = o.annotations[COSIGN_CERTIFICATE_ANNOTATION];
  const chain = o.annotations[COSIGN_CHAIN_ANNOTATION];
  let verificationMaterial: Record<string, unknown>;
  if (cert) {
    const certificates = [...pemBlocksToBase64Der(cert, COSIGN_CERTIFICATE_ANNOTATION), ...(chain ? pemBlocksToBase64Der(chain, COSIGN_CHAIN_ANNOTATION) : [])];
    verificationMaterial = { x509CertificateChain: { certificates: certificates.map((rawBytes) => ({ rawBytes })) } };
  } else {
    // A keyed legacy signature names no key: the verifier tries each trusted one.
    verificationMaterial = { publicKey: { hint: '' } };
  }
  const setText = o.annotations[COSIGN_BUNDLE_ANNOTATION];
  verificationMaterial.tlogEntries = setText ? [tlogEntryFromAnnotation(setText)] : [];
  return bundleFromObject(
    {
      mediaType: BUNDLE_V01_MEDIA_TYPE,
      verificationMaterial,
      messageSignature: {
        messageDigest: { algorithm: 'SHA2_256', digest: createHash('sha256').update(o.payload).digest('base64') },
        signature,
      },
    },
    'cosign signature layer',
  );
}

/** Reads containers/image's `signature-N` file: a marker line, then {mimeType, payload, annotations}. */
export function readSigstoreJsonAttachment(bytes: Buffer): LegacyLayer {
  if (bytes.length > MAX_BUNDLE_BYTES) throw new LadingError('E_BUNDLE_INVALID', `the signature file is over ${MAX_BUNDLE_BYTES} bytes`);
  if (!bytes.subarray(0, SIGSTORE_JSON_PREFIX.length).equals(SIGSTORE_JSON_PREFIX)) {
    throw new LadingError('E_BUNDLE_INVALID', 'not a sigstore-json signature file (missing its "\\0sigstore-json" header)');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.subarray(SIGSTORE_JSON_PREFIX.length).toString('utf8'));
  } catch {
    throw new LadingError('E_BUNDLE_INVALID', 'the sigstore-json signature file is not JSON after its header');
  }
  if (!isRecord(doc) || typeof doc.mimeType !== 'string' || typeof doc.payload !== 'string') {
    throw new LadingError('E_BUNDLE_INVALID', 'the sigstore-json signature file lacks mimeType or payload');
  }
  const annotations: Record<string, string> = {};
  if (doc.annotations !== undefined && doc.annotations !== null) {
    if (!isRecord(doc.annotations)) throw new LadingError('E_BUNDLE_INVALID', 'the sigstore-json annotations are not an object');
    for (const [k, v] of Object.entries(doc.annotations)) {
      if (typeof v !== 'string') throw new LadingError('E_BUNDLE_INVALID', `the sigstore-json annotation ${k} is not a string`);
      annotations[k] = v;
    }
  }
  return { mediaType: doc.mimeType, annotations, payload: Buffer.from(doc.payload, 'base64') };
}
