import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { LadingError, isLadingError } from '../errors.js';
import type { Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { writeFileAtomic } from '../content/atomic.js';
import type { Descriptor, Platform } from '../oci/descriptor.js';
import { isDigest } from '../oci/digest.js';
import { buildImageIndex, parseManifest } from '../oci/manifest.js';
import type { ImageManifest } from '../oci/manifest-types.js';
import { MediaType } from '../oci/mediatype.js';
import type { Families, Family } from './family.js';
import { MAX_ENVELOPE_BYTES, decodeEnvelope, encodeEnvelope, type Envelope } from './envelope.js';
import { checkInputs, pushFiles, titleFor, type FileInput, type PushFilesOptions } from './files.js';
import { pullResolved, type PullFilesOptions, type PullFilesResult } from './pull.js';
import { checkVariantExtra, formatVariant, listVariants, selectVariant, upsertVariant, variantEntry } from './variants.js';

/** Where pullTyped writes the envelope of a typed artifact, beside its files. */
export const ENVELOPE_FILE = 'lading.envelope.json';

export interface PushTypedOptions extends Omit<PushFilesOptions, 'config' | 'artifactType'> {
  family: Family;
  /** Already checked against the family (checkEnvelope); only its kind is checked again here. */
  envelope: Envelope;
  /** Push as the variant for this platform: an entry of the index at the tag. */
  platform?: Platform;
  /** Extra variant keys (`substrate=firecracker`); only with a platform. */
  variant?: Record<string, string>;
}

export interface PushTypedResult {
  /** The artifact's own manifest; with a platform, as its index entry (platform and variant keys). */
  manifest: Descriptor;
  /** The index at the tag, when pushed as a variant. */
  index?: Descriptor;
  /** The entry of the same variant that the push replaced. */
  replaced?: Descriptor;
  layers: Descriptor[];
}

/**
 * Pushes a typed artifact: the envelope as its config, the inputs as layers (none is fine: a config or a
 * bundle can be all envelope). Without a platform the manifest is tagged; with one it becomes, or
 * replaces, one variant of the index at the tag, and the other variants stay as they are.
 *
 * Adding a variant is a read-modify-write of the index at the tag. The distribution-spec has no
 * compare-and-swap for tags, so two variant pushes to the same tag at once can each read the old index
 * and the later write drops the other's variant. The tag is read a second time just before the write,
 * which narrows that window but cannot close it: pushes of variants to one tag must be serialized by
 * whoever runs them.
 */
export async function pushTyped(target: Target, tag: string | undefined, inputs: FileInput[], opts: PushTypedOptions): Promise<PushTypedResult> {
  const { family, envelope, platform, variant, ...rest } = opts;
  if (envelope.kind !== family.name) {
    throw new LadingError('E_CONFIG_INVALID', `kind: the envelope is of kind "${envelope.kind}", not "${family.name}"`, {
      hint: `set kind: ${family.name} in the envelope, or push it as a ${envelope.kind}`,
      details: { path: 'kind', kind: envelope.kind, family: family.name },
    });
  }
  for (const input of inputs) {
    const title = titleFor(input.path);
    if (title === ENVELOPE_FILE || title.startsWith(`${ENVELOPE_FILE}/`)) {
      throw new LadingError('E_USAGE', `"${title}" cannot be a file of a typed artifact: pull writes the envelope there`, {
        hint: `rename ${input.path}`,
        details: { title },
      });
    }
  }
  const bytes = encodeEnvelope(envelope);
  if (bytes.length > MAX_ENVELOPE_BYTES) {
    throw new LadingError('E_TOO_LARGE', `the envelope is ${bytes.length} bytes, more than ${MAX_ENVELOPE_BYTES}`, {
      hint: 'keep large data in the artifact\'s files, not in its spec',
    });
  }
  const files: PushFilesOptions = { ...rest, config: { mediaType: family.configMediaType, bytes }, artifactType: family.artifactType };

  if (!platform) {
    if (variant && Object.keys(variant).length > 0) {
      throw new LadingError('E_USAGE', 'variant keys need a platform', { hint: 'name the platform too, e.g. --platform linux/amd64 --variant substrate=firecracker' });
    }
    const pushed = await pushFiles(target, tag, inputs, files);
    return { manifest: pushed.descriptor, layers: pushed.layers };
  }

  if (family.variants === 'none') {
    throw new LadingError('E_USAGE', `a ${family.name} artifact has no variants`, {
      hint: 'push it without --platform and --variant',
      details: { family: family.name },
    });
  }
  if (!tag || isDigest(tag)) {
    throw new LadingError('E_USAGE', 'a variant is pushed to a tag', { hint: 'name the tag whose index should hold the variant' });
  }
  const extra = checkVariantExtra(variant ?? {});
  await checkInputs(inputs, { cwd: rest.cwd, config: files.config, artifactType: files.artifactType });
  // Refused before any byte moves when the tag holds something a variant cannot join.
  await currentVariants(target, tag, family, rest.signal);

  const pushed = await pushFiles(target, undefined, inputs, files);
  const entry = variantEntry({ ...pushed.descriptor, artifactType: family.artifactType }, { platform, extra });

  const { manifests, replaced } = upsertVariant(await currentVariants(target, tag, family, rest.signal), entry);
  // No creation time or other per-push data: pushing the same variants again gives the same index digest.
  const index = buildImageIndex({ manifests, artifactType: family.artifactType });
  rest.signal?.throwIfAborted();
  await target.push(index.descriptor, Readable.from([index.bytes]), { signal: rest.signal });
  await target.tag(index.descriptor, tag);
  return { manifest: entry, index: index.descriptor, ...(replaced ? { replaced } : {}), layers: pushed.layers };
}

/**
 * The entries of the index at `tag` that a variant of `family` may join: none when the tag is new. A
 * single manifest, or an index of another artifact type, is not overwritten by a variant push.
 */
async function currentVariants(target: Target, tag: string, family: Family, signal?: AbortSignal): Promise<Descriptor[]> {
  let current: Descriptor;
  try {
    current = await target.resolve(tag);
  } catch (err) {
    if (isLadingError(err, 'E_NOT_FOUND')) return [];
    throw err;
  }
  const parsed = parseManifest(await fetchBytes(target, current, undefined, signal), current.mediaType);
  const refuse = (what: string): never => {
    throw new LadingError('E_USAGE', `the tag "${tag}" holds ${what}, not an index of ${family.name} variants`, {
      hint: 'push the variant to another tag, or push without --platform to replace what the tag holds',
      details: { tag, digest: current.digest, mediaType: parsed.mediaType },
    });
  };
  if (parsed.kind !== 'index') return refuse('a single manifest');
  if (parsed.mediaType !== MediaType.ImageIndex) return refuse(`a ${parsed.mediaType}`);
  const { artifactType, manifests } = parsed.manifest;
  if (artifactType !== undefined && artifactType !== family.artifactType) return refuse(`an index of ${artifactType}`);
  // The index's artifactType is what says its entries are variants of this family (entries carry none):
  // an index without one is a container image or another tool's, and a variant must not join it.
  if (artifactType === undefined && manifests.length > 0) return refuse('an index without an artifactType (a container image, or another tool\'s index)');
  const foreign = manifests.find((m) => m.platform && m.artifactType !== undefined && m.artifactType !== family.artifactType);
  if (foreign) return refuse(`an index with a variant of ${foreign.artifactType}`);
  return manifests;
}

export interface TypedInfo {
  family?: Family;
  envelope?: Envelope;
}

/**
 * The family and envelope of the artifact `desc` names, when its config is the envelope of a known
 * family; `{}` for indexes and for untyped artifacts. An envelope that fails its family's checks is an
 * error, not an untyped artifact.
 */
export async function readTyped(target: Target, desc: Descriptor, families: Families, signal?: AbortSignal): Promise<TypedInfo> {
  const parsed = parseManifest(await fetchBytes(target, desc, undefined, signal), desc.mediaType);
  return parsed.kind === 'manifest' ? envelopeOf(target, parsed.manifest, families, signal) : {};
}

async function envelopeOf(target: Target, manifest: ImageManifest, families: Families, signal?: AbortSignal): Promise<TypedInfo> {
  const family = families.byConfigMediaType(manifest.config.mediaType);
  if (!family) return {};
  if (manifest.config.size > MAX_ENVELOPE_BYTES) {
    throw new LadingError('E_TOO_LARGE', `the ${family.name} envelope ${manifest.config.digest} is ${manifest.config.size} bytes, more than ${MAX_ENVELOPE_BYTES}`, {
      details: { digest: manifest.config.digest, size: manifest.config.size, limit: MAX_ENVELOPE_BYTES },
    });
  }
  const bytes = await fetchBytes(target, manifest.config, MAX_ENVELOPE_BYTES, signal);
  return { family, envelope: decodeEnvelope(bytes, family) };
}

export interface PullTypedOptions extends Omit<PullFilesOptions, 'reservedTitles'> {
  families: Families;
  /** Required when the reference is an index: the variant to take. */
  platform?: Platform;
  variant?: Record<string, string>;
  /** The digest the reference must resolve to (a lockfile's pin); E_LOCK_MISMATCH otherwise. */
  expectDigest?: string;
  /** How messages name what is pulled (the full reference); defaults to `reference`. */
  display?: string;
  /** The manifest the variant selection must land on (a lockfile's pin for a platform); E_LOCK_MISMATCH otherwise. */
  expectManifest?: string;
}

export interface PullTypedResult extends PullFilesResult {
  /** What the reference resolved to: the index for a variant, else the manifest itself. */
  root: Descriptor;
  /** The index entry that was chosen. */
  variant?: Descriptor;
  family?: Family;
  envelope?: Envelope;
  /** Where the envelope was written. */
  envelopePath?: string;
}

/**
 * Pulls a typed artifact into `outDir`: the exact variant asked for when the reference is an index, its
 * files as pullFiles writes them, and its envelope as `lading.envelope.json`. Everything that can be
 * refused — a lock mismatch, a missing variant, an envelope that fails its schema, a layer that would
 * overwrite the envelope — is refused before any file is written.
 */
export async function pullTyped(target: Target, reference: string, outDir: string, opts: PullTypedOptions): Promise<PullTypedResult> {
  const { families, platform, variant, expectDigest, expectManifest, display, ...pull } = opts;
  const what = display ?? reference;
  const extra = checkVariantExtra(variant ?? {});
  if (!platform && Object.keys(extra).length > 0) {
    throw new LadingError('E_USAGE', 'variant keys need a platform', { hint: 'name the platform too, e.g. --platform linux/amd64 --variant substrate=firecracker' });
  }
  const root = await target.resolve(reference);
  if (expectDigest !== undefined && root.digest !== expectDigest) {
    throw new LadingError('E_LOCK_MISMATCH', `${what} resolves to ${root.digest}, not ${expectDigest} as locked`, {
      hint: 'the reference moved since it was locked: run lading lock to accept the change, or pull the locked digest',
      details: { reference, expected: expectDigest, actual: root.digest },
    });
  }
  const parsedRoot = parseManifest(await fetchBytes(target, root, undefined, pull.signal), root.mediaType);
  let desc = root;
  let chosen: Descriptor | undefined;
  let manifest: ImageManifest;
  if (parsedRoot.kind === 'index') {
    const entries = parsedRoot.manifest.manifests;
    if (!platform) {
      const variants = listVariants(entries);
      throw new LadingError('E_VARIANT_NOT_FOUND', `${what} is an index of variants; name one: ${variants.map((v) => v.variant).join('; ') || 'it has none'}`, {
        hint: 'add --platform os/arch[/variant] (--platform native for this host) and --variant key=value for extra keys',
        details: { variants },
      });
    }
    chosen = selectVariant(entries, { platform, extra }, what);
    if (expectManifest !== undefined && chosen.digest !== expectManifest) {
      throw new LadingError('E_LOCK_MISMATCH', `${what} for ${formatVariant({ platform, extra })} selects ${chosen.digest}, not ${expectManifest} as locked`, {
        hint: 'pull the platform and variant that were locked, or run lading lock again to accept the change',
        details: { reference, expected: expectManifest, actual: chosen.digest },
      });
    }
    desc = chosen;
    const parsed = parseManifest(await fetchBytes(target, chosen, undefined, pull.signal), chosen.mediaType);
    if (parsed.kind !== 'manifest') {
      throw new LadingError('E_UNSUPPORTED', `the variant ${formatVariant({ platform, extra })} of ${what} is itself an index`, {
        hint: `pull it by digest: ${chosen.digest}`,
      });
    }
    manifest = parsed.manifest;
  } else if (platform) {
    throw new LadingError('E_VARIANT_NOT_FOUND', `${what} is a single-manifest artifact with no variants; it has no variant ${formatVariant({ platform, extra })}`, {
      hint: 'pull it without --platform and --variant',
      details: { requested: formatVariant({ platform, extra }), variants: [] },
    });
  } else {
    manifest = parsedRoot.manifest;
  }

  const typed = await envelopeOf(target, manifest, families, pull.signal);
  const result = await pullResolved(target, desc, outDir, {
    ...pull,
    name: what,
    manifest,
    ...(typed.envelope ? { reservedTitles: [ENVELOPE_FILE] } : {}),
  });
  let envelopePath: string | undefined;
  if (typed.envelope) {
    envelopePath = join(resolve(outDir), ENVELOPE_FILE);
    await writeFileAtomic(envelopePath, `${JSON.stringify(typed.envelope, null, 2)}\n`);
  }
  return {
    ...result,
    root,
    ...(chosen ? { variant: chosen } : {}),
    ...(typed.family ? { family: typed.family } : {}),
    ...(typed.envelope ? { envelope: typed.envelope, envelopePath } : {}),
  };
}
