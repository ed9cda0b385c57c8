import { LadingError } from '../errors.js';
import { plainDescriptor, type Descriptor, type Platform } from './descriptor.js';
import { digestOf, parseDigest, type DigestAlgorithm } from './digest.js';
import { MAX_MANIFEST_BYTES, type ImageIndex, type ImageManifest, type ParsedManifest } from './manifest-types.js';
import { MediaType, isIndexMediaType, isManifestMediaType, isValidMediaType } from './mediatype.js';

const INVALID_HINT = 'the document does not follow the OCI image-spec; the tool that wrote it is faulty or the content is damaged';
const SCHEMA1_TYPES = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
]);
const SCHEMA1_HINT =
  'Docker schema 1 manifests are deprecated and unsigned by any current tool; re-push the image with a current ' +
  'Docker, buildah or crane so that it has a schema 2 or OCI manifest';
const IMAGE_CONFIG_TYPES = new Set<string>([MediaType.ImageConfig, MediaType.DockerConfig]);
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HASHABLE = new Set(['sha256', 'sha384', 'sha512']);

function invalid(path: string, why: string, cause?: unknown): LadingError {
  return new LadingError('E_MANIFEST_INVALID', `${path}: ${why}`, {
    hint: INVALID_HINT,
    details: { path },
    ...(cause === undefined ? {} : { cause }),
  });
}

function unsupported(mediaType: string, where: string): LadingError {
  const schema1 = SCHEMA1_TYPES.has(mediaType);
  return new LadingError('E_MEDIA_TYPE_UNSUPPORTED', `${where} media type "${mediaType}" is not a manifest type lading reads`, {
    hint: schema1
      ? SCHEMA1_HINT
      : 'lading reads OCI image manifests and indexes, and Docker schema 2 manifests and manifest lists',
    details: { mediaType },
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function quote(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v);
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

/** `application/vnd.oci.image.manifest.v1+json; charset=utf-8` → the bare, lower-cased type. */
function bareMediaType(mediaType: string): string {
  return mediaType.split(';', 1)[0]!.trim().toLowerCase();
}

function mediaTypeField(v: unknown, path: string): string {
  if (typeof v !== 'string') return fail(path, `must be a media type string, got ${quote(v)}`);
  if (!isValidMediaType(v)) return fail(path, `invalid media type ${quote(v)}`);
  return v;
}

function fail(path: string, why: string): never {
  throw invalid(path, why);
}

function stringMap(v: unknown, path: string): Record<string, string> {
  if (!isObject(v)) return fail(path, 'must be an object of string values');
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') fail(`${path}[${JSON.stringify(k)}]`, `must be a string, got ${quote(val)}`);
  }
  // fromEntries defines own properties, so a "__proto__" key stays data instead of replacing the prototype.
  return Object.fromEntries(Object.entries(v)) as Record<string, string>;
}

function stringArray(v: unknown, path: string): string[] {
  if (!Array.isArray(v)) return fail(path, 'must be an array of strings');
  v.forEach((s, i) => {
    if (typeof s !== 'string') fail(`${path}[${i}]`, `must be a string, got ${quote(s)}`);
  });
  return [...(v as string[])];
}

function requiredString(v: unknown, path: string): string {
  if (typeof v !== 'string' || v === '') return fail(path, `must be a non-empty string, got ${quote(v)}`);
  return v;
}

const MANIFEST_FIELDS = ['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'manifests', 'subject', 'annotations'];
const DESCRIPTOR_FIELDS = ['mediaType', 'digest', 'size', 'urls', 'annotations', 'data', 'platform', 'artifactType'];
const PLATFORM_FIELDS = ['architecture', 'os', 'os.version', 'os.features', 'variant', 'features'];

/**
 * Go's JSON decoder (registries, containerd, cosign) matches keys case-insensitively; JavaScript does not.
 * A key that differs from a spec field only in case would be read one way here and another way there,
 * so such a document is refused.
 */
function refuseCaseVariants(o: Record<string, unknown>, fields: readonly string[], path: string): void {
  for (const key of Object.keys(o)) {
    const field = fields.find((f) => f.toLowerCase() === key.toLowerCase());
    if (field !== undefined && field !== key) fail(`${path}${path ? '.' : ''}${key}`, `differs only in case from "${field}", which other readers take it for`);
  }
}

function validatePlatform(v: unknown, path: string): Platform {
  if (!isObject(v)) return fail(path, 'must be an object');
  refuseCaseVariants(v, PLATFORM_FIELDS, path);
  const p: Platform = {
    architecture: requiredString(v.architecture, `${path}.architecture`),
    os: requiredString(v.os, `${path}.os`),
  };
  if (v['os.version'] !== undefined) {
    if (typeof v['os.version'] !== 'string') fail(`${path}["os.version"]`, 'must be a string');
    p['os.version'] = v['os.version'] as string;
  }
  if (v['os.features'] !== undefined) p['os.features'] = stringArray(v['os.features'], `${path}["os.features"]`);
  if (v.variant !== undefined) {
    if (typeof v.variant !== 'string') fail(`${path}.variant`, 'must be a string');
    p.variant = v.variant as string;
  }
  if (v.features !== undefined) p.features = stringArray(v.features, `${path}.features`);
  return p;
}

/**
 * Checks one descriptor and returns a copy holding only the fields the image-spec defines. `path` names
 * where it sits (e.g. `layers[2]`) so the error points at the field at fault.
 */
export function validateDescriptor(d: unknown, path: string): Descriptor {
  if (!isObject(d)) return fail(path, `must be a descriptor object, got ${quote(d)}`);
  refuseCaseVariants(d, DESCRIPTOR_FIELDS, path);
  const mediaType = mediaTypeField(d.mediaType, `${path}.mediaType`);
  if (typeof d.digest !== 'string') fail(`${path}.digest`, `must be a digest string, got ${quote(d.digest)}`);
  const digest = d.digest as string;
  let algorithm: string;
  try {
    algorithm = parseDigest(digest).algorithm;
  } catch (err) {
    throw invalid(`${path}.digest`, err instanceof Error ? err.message : String(err), err);
  }
  const size = d.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    fail(`${path}.size`, `must be a non-negative integer, got ${quote(size)}`);
  }
  const out: Descriptor = { mediaType, digest, size: size as number };
  if (d.urls !== undefined) out.urls = stringArray(d.urls, `${path}.urls`);
  if (d.annotations !== undefined) out.annotations = stringMap(d.annotations, `${path}.annotations`);
  if (d.data !== undefined) out.data = embeddedData(d.data, out, algorithm, `${path}.data`);
  if (d.platform !== undefined) out.platform = validatePlatform(d.platform, `${path}.platform`);
  if (d.artifactType !== undefined) out.artifactType = mediaTypeField(d.artifactType, `${path}.artifactType`);
  return out;
}

/** Embedded content is small by construction, so it is checked here rather than trusted until use. */
function embeddedData(v: unknown, desc: Descriptor, algorithm: string, path: string): string {
  if (typeof v !== 'string' || !BASE64_RE.test(v)) return fail(path, 'must be standard base64');
  const bytes = Buffer.from(v, 'base64');
  if (bytes.length !== desc.size) fail(path, `decodes to ${bytes.length} bytes but size is ${desc.size}`);
  if (HASHABLE.has(algorithm) && digestOf(bytes, algorithm as DigestAlgorithm) !== desc.digest) {
    fail(path, `does not hash to ${desc.digest}`);
  }
  return v;
}

function descriptorList(v: unknown, path: string): Descriptor[] {
  if (v === undefined) return fail(path, 'is required');
  if (!Array.isArray(v)) return fail(path, `must be an array of descriptors, got ${quote(v)}`);
  return v.map((d, i) => validateDescriptor(d, `${path}[${i}]`));
}

function decodeJSON(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (err) {
    throw new LadingError('E_JSON_INVALID', 'manifest is not valid UTF-8', { cause: err, hint: INVALID_HINT });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LadingError('E_JSON_INVALID', `manifest is not valid JSON: ${(err as Error).message}`, {
      cause: err,
      hint: INVALID_HINT,
    });
  }
}

/**
 * Parses and validates a manifest or index. `mediaType` is what the bytes were served or described as
 * (Content-Type or descriptor); when both it and the body's own `mediaType` are present they must agree,
 * because a document readable as two different kinds is how manifest-confusion attacks work.
 */
export function parseManifest(bytes: Uint8Array, mediaType?: string): ParsedManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new LadingError('E_MANIFEST_TOO_LARGE', `manifest is ${bytes.byteLength} bytes, more than ${MAX_MANIFEST_BYTES}`, {
      hint: 'registries are only required to accept manifests up to 4 MiB; split the content across more layers or an index',
      details: { size: bytes.byteLength, limit: MAX_MANIFEST_BYTES },
    });
  }
  const given = mediaType === undefined || mediaType.trim() === '' ? undefined : bareMediaType(mediaType);
  if (given !== undefined && !isManifestMediaType(given)) throw unsupported(given, 'the given');

  const body = decodeJSON(bytes);
  if (!isObject(body)) return fail('manifest', `must be a JSON object, got ${Array.isArray(body) ? 'an array' : quote(body)}`);
  refuseCaseVariants(body, MANIFEST_FIELDS, '');
  if (body.schemaVersion === 1) {
    throw new LadingError('E_MEDIA_TYPE_UNSUPPORTED', 'schemaVersion 1: Docker schema 1 manifests are not supported', {
      hint: SCHEMA1_HINT,
      details: { schemaVersion: 1 },
    });
  }
  if (body.schemaVersion !== 2) fail('schemaVersion', `must be 2, got ${quote(body.schemaVersion)}`);

  let declared: string | undefined;
  if (body.mediaType !== undefined) {
    if (typeof body.mediaType !== 'string') fail('mediaType', `must be a string, got ${quote(body.mediaType)}`);
    declared = bareMediaType(body.mediaType as string);
    if (!isManifestMediaType(declared)) throw unsupported(declared, "the manifest's own");
  }
  if (given !== undefined && declared !== undefined && given !== declared) {
    fail('mediaType', `the manifest says ${quote(declared)} but it was served or described as ${quote(given)}`);
  }

  let effective = given ?? declared;
  if (effective === undefined) {
    const hasManifests = body.manifests !== undefined;
    const hasConfig = body.config !== undefined;
    if (hasManifests === hasConfig) {
      fail('mediaType', 'is missing and the document has ' + (hasManifests ? 'both "manifests" and "config"' : 'neither "manifests" nor "config"'));
    }
    effective = hasManifests ? MediaType.ImageIndex : MediaType.ImageManifest;
  }

  const head: { schemaVersion: 2; mediaType?: string; artifactType?: string } = { schemaVersion: 2 };
  if (declared !== undefined) head.mediaType = body.mediaType as string;
  if (body.artifactType !== undefined) head.artifactType = mediaTypeField(body.artifactType, 'artifactType');
  const tail: { subject?: Descriptor; annotations?: Record<string, string> } = {};
  if (body.subject !== undefined) tail.subject = validateDescriptor(body.subject, 'subject');
  if (body.annotations !== undefined) tail.annotations = stringMap(body.annotations, 'annotations');

  if (isIndexMediaType(effective)) {
    // Fields of the other kind make a document readable both ways; refuse rather than pick one.
    for (const field of ['config', 'layers']) {
      if (body[field] !== undefined) fail(field, `must not appear in an index (${effective})`);
    }
    const manifest: ImageIndex = { ...head, manifests: descriptorList(body.manifests, 'manifests'), ...tail };
    return { kind: 'index', mediaType: effective, manifest };
  }
  if (body.manifests !== undefined) fail('manifests', `must not appear in an image manifest (${effective})`);
  if (body.config === undefined) fail('config', 'is required');
  const manifest: ImageManifest = {
    ...head,
    config: validateDescriptor(body.config, 'config'),
    layers: descriptorList(body.layers, 'layers'),
    ...tail,
  };
  return { kind: 'manifest', mediaType: effective, manifest };
}

/** The content a manifest points down to: config then layers, or an index's entries. Subjects point up. */
export function manifestChildren(p: ParsedManifest): Descriptor[] {
  return p.kind === 'index' ? [...p.manifest.manifests] : [p.manifest.config, ...p.manifest.layers];
}

/** Compact JSON in the key order given: the bytes of manifests lading writes, and hence their digests. */
export function encodeJSON(value: unknown): Buffer {
  const text = JSON.stringify(value);
  if (text === undefined) throw new LadingError('E_JSON_INVALID', `a ${typeof value} cannot be encoded as JSON`);
  return Buffer.from(text, 'utf8');
}

interface BuildCommon {
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

function checkCommon(o: BuildCommon): void {
  if (o.artifactType !== undefined) mediaTypeField(o.artifactType, 'artifactType');
  if (o.subject !== undefined) validateDescriptor(o.subject, 'subject');
  if (o.annotations !== undefined) stringMap(o.annotations, 'annotations');
}

function finish<T extends ImageManifest | ImageIndex>(manifest: T, artifactType: string | undefined) {
  const bytes = encodeJSON(manifest);
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new LadingError('E_MANIFEST_TOO_LARGE', `the manifest would be ${bytes.length} bytes, more than ${MAX_MANIFEST_BYTES}`, {
      hint: 'use fewer layers or entries, or shorter annotations',
      details: { size: bytes.length, limit: MAX_MANIFEST_BYTES },
    });
  }
  const descriptor: Descriptor = { mediaType: manifest.mediaType!, digest: digestOf(bytes), size: bytes.length };
  if (artifactType !== undefined) descriptor.artifactType = artifactType;
  return { manifest, bytes, descriptor };
}

/**
 * An OCI image manifest. The image-spec requires `artifactType` when the config is the empty descriptor.
 * The returned descriptor carries the artifact type as descriptor.md defines it (the manifest's
 * artifactType, else the config media type), except for plain images, which are not artifacts.
 */
export function buildImageManifest(o: {
  config: Descriptor;
  layers: Descriptor[];
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}): { manifest: ImageManifest; bytes: Buffer; descriptor: Descriptor } {
  const config = validateDescriptor(o.config, 'config');
  o.layers.forEach((l, i) => validateDescriptor(l, `layers[${i}]`));
  checkCommon(o);
  if (config.mediaType === MediaType.Empty && o.artifactType === undefined) {
    throw new LadingError('E_MANIFEST_INVALID', 'artifactType: is required when the config is the empty descriptor', {
      hint: 'set artifactType to the media type of the artifact (the image-spec requires it for empty configs)',
      details: { path: 'artifactType' },
    });
  }
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ImageManifest } as ImageManifest;
  if (o.artifactType !== undefined) manifest.artifactType = o.artifactType;
  manifest.config = plainDescriptor(o.config);
  manifest.layers = o.layers.map(plainDescriptor);
  if (o.subject !== undefined) manifest.subject = plainDescriptor(o.subject);
  if (o.annotations !== undefined && Object.keys(o.annotations).length > 0) manifest.annotations = { ...o.annotations };
  const artifactType = o.artifactType ?? (IMAGE_CONFIG_TYPES.has(config.mediaType) ? undefined : config.mediaType);
  return finish(manifest, artifactType);
}

/** An OCI image index; its entries may be manifests of any kind, including artifacts. */
export function buildImageIndex(o: {
  manifests: Descriptor[];
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}): { manifest: ImageIndex; bytes: Buffer; descriptor: Descriptor } {
  o.manifests.forEach((m, i) => validateDescriptor(m, `manifests[${i}]`));
  checkCommon(o);
  const manifest: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ImageIndex } as ImageIndex;
  if (o.artifactType !== undefined) manifest.artifactType = o.artifactType;
  manifest.manifests = o.manifests.map(plainDescriptor);
  if (o.subject !== undefined) manifest.subject = plainDescriptor(o.subject);
  if (o.annotations !== undefined && Object.keys(o.annotations).length > 0) manifest.annotations = { ...o.annotations };
  return finish(manifest, o.artifactType);
}

/**
 * How a manifest is listed among the referrers of its subject: its artifactType (else its config's media
 * type) and its annotations. Undefined when it has no subject, or does not parse as `desc.mediaType`.
 */
export function referrerOf(desc: Descriptor, data: Uint8Array): { subject: string; descriptor: Descriptor } | undefined {
  let parsed: ParsedManifest;
  try {
    parsed = parseManifest(data, desc.mediaType);
  } catch {
    return undefined;
  }
  const { subject, annotations } = parsed.manifest;
  if (!subject) return undefined;
  const artifactType = parsed.manifest.artifactType ?? (parsed.kind === 'manifest' ? parsed.manifest.config.mediaType : undefined);
  const descriptor: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  if (artifactType) descriptor.artifactType = artifactType;
  if (annotations && Object.keys(annotations).length > 0) descriptor.annotations = annotations;
  return { subject: subject.digest, descriptor };
}
