import { LadingError } from '../errors.js';
import type { Descriptor, Platform } from '../oci/descriptor.js';
import { formatPlatform, normalizePlatform } from '../oci/platform.js';

/**
 * Variants: the entries of an OCI image index, each one concrete selection of an artifact. The platform
 * sits where the image-spec puts it (the entry's `platform`); keys beyond it (`substrate`, `protection`)
 * are entry annotations under this prefix, so that other tools carry them along untouched.
 */
export const VARIANT_ANNOTATION_PREFIX = 'dev.lading.variant.';

export interface VariantSelector {
  platform: Platform;
  extra: Record<string, string>;
}

const KEY_RE = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;
const MAX_VALUE = 256;
/** Parts of the platform: written as a key, they would compete with --platform for the same meaning. */
const PLATFORM_KEYS = new Set(['os', 'arch', 'architecture', 'variant', 'platform', 'os.version', 'os.features', 'features']);
const KEY_HINT = 'write --variant key=value with a key of lower-case letters, digits and ".", "_", "-" (at most 64, starting and ending with a letter or digit) and a value of 1 to 256 characters, e.g. --variant substrate=firecracker';

/** Checks extra variant keys and values, wherever they come from (command line or library caller). */
export function checkVariantExtra(extra: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(extra)) {
    if (!KEY_RE.test(key)) {
      throw new LadingError('E_USAGE', `invalid variant key "${key}"`, { hint: KEY_HINT, details: { key } });
    }
    if (PLATFORM_KEYS.has(key)) {
      throw new LadingError('E_USAGE', `variant key "${key}" names part of the platform`, {
        hint: 'give os, architecture and variant with --platform os/arch[/variant][:os.version]',
        details: { key },
      });
    }
    if (typeof value !== 'string' || value === '' || value.length > MAX_VALUE) {
      throw new LadingError('E_USAGE', `variant "${key}" needs a value of 1 to ${MAX_VALUE} characters`, { hint: KEY_HINT, details: { key } });
    }
    // A plain object with a "__proto__" key would otherwise change its prototype instead of holding data.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** `['substrate=firecracker', 'protection=pvm']` → `{substrate: 'firecracker', protection: 'pvm'}`. */
export function parseVariantArgs(args: string[]): Record<string, string> {
  const pairs: Record<string, string> = {};
  const seen = new Set<string>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq < 0) throw new LadingError('E_USAGE', `invalid variant "${arg}": expected key=value`, { hint: KEY_HINT });
    const key = arg.slice(0, eq);
    if (seen.has(key)) {
      throw new LadingError('E_USAGE', `variant key "${key}" is given twice`, { hint: 'give each --variant key once', details: { key } });
    }
    seen.add(key);
    Object.defineProperty(pairs, key, { value: arg.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  return checkVariantExtra(pairs);
}

/** The variant an index entry stands for; undefined for entries without a platform (not variants). */
export function variantOf(entry: Descriptor): VariantSelector | undefined {
  if (!entry.platform) return undefined;
  const extra: Record<string, string> = {};
  for (const [key, value] of Object.entries(entry.annotations ?? {})) {
    if (key.startsWith(VARIANT_ANNOTATION_PREFIX) && key.length > VARIANT_ANNOTATION_PREFIX.length) {
      Object.defineProperty(extra, key.slice(VARIANT_ANNOTATION_PREFIX.length), { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return { platform: normalizePlatform(entry.platform), extra };
}

/**
 * The index entry that makes `manifest` the variant `v`. Its fields come in one fixed order (the
 * image-spec's Go types' order, which is also how a parsed index holds them; annotation keys sorted),
 * so that the same variants always serialize to the same index bytes, whatever order flags came in.
 */
export function variantEntry(manifest: Descriptor, v: VariantSelector): Descriptor {
  const n = normalizePlatform(v.platform);
  const platform: Platform = { architecture: n.architecture, os: n.os };
  if (n['os.version'] !== undefined) platform['os.version'] = n['os.version'];
  if (n['os.features'] !== undefined) platform['os.features'] = n['os.features'];
  if (n.variant !== undefined) platform.variant = n.variant;
  if (n.features !== undefined) platform.features = n.features;
  // No artifactType on the entry (the index carries it): skopeo 1.9 cannot keep one, and re-encodes the
  // whole index without it, so copies would change the index digest.
  const entry: Descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size };
  if (Object.keys(v.extra).length > 0) entry.annotations = variantAnnotations(v.extra);
  entry.platform = platform;
  return entry;
}

/** The entry annotations that record `extra`, keys sorted. */
export function variantAnnotations(extra: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.keys(extra)
      .sort()
      .map((k) => [`${VARIANT_ANNOTATION_PREFIX}${k}`, extra[k]!]),
  );
}

/** `linux/amd64 protection=pvm,substrate=firecracker`: keys sorted, so one variant always reads the same. */
export function formatVariant(v: VariantSelector): string {
  const platform = formatPlatform(normalizePlatform(v.platform));
  const keys = Object.keys(v.extra).sort();
  return keys.length === 0 ? platform : `${platform} ${keys.map((k) => `${k}=${v.extra[k]}`).join(',')}`;
}

function samePlatform(a: Platform, b: Platform, anyOsVersion: boolean): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  if (x.os !== y.os || x.architecture !== y.architecture || x.variant !== y.variant) return false;
  return anyOsVersion || x['os.version'] === y['os.version'];
}

function sameExtra(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/**
 * Whether two selectors name the same variant: os, architecture, variant and os.version equal after
 * normalization, and exactly the same extra keys and values. Feature lists are not part of a variant's
 * identity (platformEquals ignores them too).
 */
export function sameVariant(a: VariantSelector, b: VariantSelector): boolean {
  return samePlatform(a.platform, b.platform, false) && sameExtra(a.extra, b.extra);
}

/**
 * The entries with `entry` in place of the one of the same variant (same position), or appended when
 * there is none. Entries that are not variants are kept as they are. Should the index already hold the
 * variant twice (which lading never writes), the later copies go too: the caller is replacing that variant.
 */
export function upsertVariant(entries: Descriptor[], entry: Descriptor): { manifests: Descriptor[]; replaced?: Descriptor } {
  const want = variantOf(entry);
  if (!want) throw new LadingError('E_USAGE', `the entry ${entry.digest} has no platform, so it is no variant`);
  const manifests: Descriptor[] = [];
  let replaced: Descriptor | undefined;
  for (const e of entries) {
    const have = variantOf(e);
    if (!have || !sameVariant(have, want)) {
      manifests.push(e);
    } else if (!replaced) {
      replaced = e;
      manifests.push(entry);
    }
  }
  if (!replaced) manifests.push(entry);
  return replaced ? { manifests, replaced } : { manifests };
}

/** Every variant of an index, for error messages and listings. */
export function listVariants(manifests: Descriptor[]): Array<{ variant: string; platform: Platform; extra: Record<string, string>; digest: string }> {
  const out = [];
  for (const m of manifests) {
    const v = variantOf(m);
    if (v) out.push({ variant: formatVariant(v), platform: v.platform, extra: v.extra, digest: m.digest });
  }
  return out;
}

/**
 * The one entry of `manifests` that is exactly `want`. No near match is ever taken instead: a request
 * without an extra key does not match an entry that has one. The one leniency is the one platformEquals
 * has: a request without os.version accepts any os.version, and must then find a single entry.
 * `what` names the artifact in messages.
 */
export function selectVariant(manifests: Descriptor[], want: VariantSelector, what: string): Descriptor {
  const variants = listVariants(manifests);
  const wanted = formatVariant(want);
  const anyOsVersion = normalizePlatform(want.platform)['os.version'] === undefined;
  const matches = manifests.filter((m) => {
    const have = variantOf(m);
    return have !== undefined && samePlatform(want.platform, have.platform, anyOsVersion) && sameExtra(want.extra, have.extra);
  });
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) {
    const available = variants.length === 0 ? 'it has no variants' : `it has: ${variants.map((v) => v.variant).join('; ')}`;
    throw new LadingError('E_VARIANT_NOT_FOUND', `${what} has no variant ${wanted}; ${available}`, {
      hint: 'choose one of the listed variants with --platform os/arch[/variant] (or --platform native) and one --variant key=value per extra key',
      details: { requested: wanted, variants },
    });
  }
  const distinct = new Set(matches.map((m) => formatVariant(variantOf(m)!)));
  if (distinct.size > 1) {
    // They differ only in os.version, which the request left open.
    throw new LadingError('E_VARIANT_NOT_FOUND', `${what} has ${matches.length} variants matching ${wanted}: ${[...distinct].join('; ')}`, {
      hint: 'name the os.version too, e.g. --platform windows/amd64:10.0.17763',
      details: { requested: wanted, variants },
    });
  }
  throw new LadingError('E_MANIFEST_INVALID', `${what} lists the variant ${wanted} ${matches.length} times`, {
    hint: 'the index is ambiguous; push that variant again to replace every copy, or pull one of them by digest',
    details: { requested: wanted, digests: matches.map((m) => m.digest), variants },
  });
}
