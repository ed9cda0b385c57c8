import { LadingError, isLadingError } from '../errors.js';
import type { Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import type { Descriptor } from '../oci/descriptor.js';
import { parseDigest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import type { ParsedManifest } from '../oci/manifest-types.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { formatReference, parseTargetReference, type TargetReference } from '../oci/reference.js';
import { MAX_ENVELOPE_BYTES, decodeEnvelope, type Envelope } from './envelope.js';
import { lookupFamily, type Families, type Family } from './family.js';
import { formatVariant, variantOf } from './variants.js';

/** Opens a reference as a target; the CLI builds one on openTarget, tests on memory stores. */
export interface Opener {
  open(ref: string): Promise<{ target: Target; reference: string; display: string }>;
}

/** One variant of an index node: its manifest, platform (`linux/arm64`) and extra keys. */
export interface PlanVariant {
  digest: string;
  platform: string;
  extra: Record<string, string>;
}

/** One artifact of a resolved plan, pinned to the digest its reference had when it was resolved. */
export interface PlanNode {
  /** The reference as written: by the user for the root, in the bundle spec for a component. */
  ref: string;
  /** The canonical reference with `@digest`: what to pull to get exactly this node again. */
  pinned: string;
  digest: string;
  mediaType: string;
  size: number;
  /**
   * `digest` when the digest was fixed by what was written (the reference, or the component's `digest`);
   * `tag` when a tag was resolved now, which is what a lockfile has to record.
   */
  pinnedBy: 'digest' | 'tag';
  artifactType?: string;
  family?: string;
  /** The component's name in its bundle, else the envelope's metadata.name for a bundle. */
  name?: string;
  mount?: { path: string; readOnly: boolean };
  /** Present when the node is an index. */
  variants?: PlanVariant[];
  /** Present when the node is a bundle, in spec order. */
  components?: PlanNode[];
}

export interface ResolveBundleOptions {
  signal?: AbortSignal;
  /** Deepest nesting of bundles followed; the root is depth 0. */
  maxDepth?: number;
  /** Most nodes in the plan, counting every occurrence of a component reached by several parents. */
  maxNodes?: number;
}

export const DEFAULT_MAX_DEPTH = 16;
export const DEFAULT_MAX_NODES = 1000;
export const BUNDLE_FAMILY = 'bundle';

/** What resolution needs of Families; a Families instance is one. */
export type FamilyLookup = Pick<Families, 'list' | 'byArtifactType' | 'byConfigMediaType'>;

/** One entry of a bundle's spec.components, checked, with the digest a pinned ref carries. */
export interface BundleComponent {
  name?: string;
  ref: string;
  digest?: string;
  mount?: { path: string; readOnly: boolean };
}

interface Fetched {
  parsed: ParsedManifest;
  family?: Family;
  envelope?: Envelope;
}

interface Step {
  ref: string;
  digest: string;
}

/**
 * Resolves `ref` into a plan in which every tag is pinned to a digest, following bundles into their
 * components depth first in spec order. A tag met twice is resolved once, so one plan never holds two
 * answers for it; a digest already on the path from the root is a cycle, while the same component under
 * two parents (a diamond) is not.
 */
export async function resolveBundle(opener: Opener, ref: string, families: FamilyLookup, opts: ResolveBundleOptions = {}): Promise<PlanNode> {
  const r = new Resolver(opener, families, opts);
  return r.node(ref, undefined, [], '');
}

class Resolver {
  private readonly maxDepth: number;
  private readonly maxNodes: number;
  private nodes = 0;
  private readonly tags = new Map<string, Descriptor>();
  private readonly fetched = new Map<string, Fetched>();
  private readonly opened = new Map<string, ReturnType<Opener['open']>>();

  constructor(
    private readonly opener: Opener,
    private readonly families: FamilyLookup,
    private readonly opts: ResolveBundleOptions,
  ) {
    this.maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.maxNodes = opts.maxNodes ?? DEFAULT_MAX_NODES;
  }

  /** `where` names the component (`reg/b:1 spec.components[2]`) for errors; empty for the root. */
  async node(ref: string, component: BundleComponent | undefined, path: Step[], where: string): Promise<PlanNode> {
    this.opts.signal?.throwIfAborted();
    if (path.length > this.maxDepth) {
      const chain = [...path.map((s) => s.ref), ref].join(' → ');
      throw new LadingError('E_TOO_LARGE', `bundles nest more than ${this.maxDepth} levels deep: ${chain}`, {
        hint: 'flatten the bundle, or raise the depth limit if the nesting is intended',
        details: { maxDepth: this.maxDepth, path: [...path.map((s) => s.ref), ref] },
      });
    }
    if (++this.nodes > this.maxNodes) {
      throw new LadingError('E_TOO_LARGE', `the plan of ${path[0]?.ref ?? ref} has more than ${this.maxNodes} artifacts`, {
        hint: 'components shared by many bundles count once per parent; split the bundle or raise the node limit',
        details: { maxNodes: this.maxNodes },
      });
    }

    const { desc, pinnedBy, pinned } = await this.withContext(where, () => this.resolveRef(ref, component?.digest));
    const seen = path.findIndex((s) => s.digest === desc.digest);
    if (seen >= 0) {
      const cycle = [...path.slice(seen).map((s) => s.ref), ref];
      throw new LadingError('E_BUNDLE_CYCLE', `bundle cycle: ${cycle.join(' → ')}`, {
        hint: `${ref} resolves to ${desc.digest}, a bundle that is already being resolved; pin the components by digest, or re-point the tag`,
        details: { cycle, digests: [...path.slice(seen).map((s) => s.digest), desc.digest] },
      });
    }
    const { parsed, family, envelope } = await this.withContext(where, () => this.fetch(ref, desc));

    const node: PlanNode = { ref, pinned, digest: desc.digest, mediaType: desc.mediaType, size: desc.size, pinnedBy };
    const artifactType = parsed.manifest.artifactType;
    if (artifactType !== undefined) node.artifactType = artifactType;
    if (family) node.family = family.name;
    const name = component?.name ?? envelope?.metadata.name;
    if (name !== undefined) node.name = name;
    const mount = component?.mount ?? envelope?.mount;
    if (mount) node.mount = { path: mount.path, readOnly: mount.readOnly };
    if (parsed.kind === 'index') node.variants = parsed.manifest.manifests.map(variantEntry);

    if (envelope && family?.name === BUNDLE_FAMILY) {
      // A bundle's layout components are directories on this machine: only a bundle that was itself
      // opened from a layout may name them, never one fetched from a registry.
      const components = bundleComponents(envelope, ref, { allowLayout: parseTargetReference(ref).kind === 'layout' });
      const below = [...path, { ref, digest: desc.digest }];
      node.components = [];
      for (const [i, c] of components.entries()) {
        node.components.push(await this.node(c.ref, c, below, `${ref} spec.components[${i}]`));
      }
    }
    return node;
  }

  private async resolveRef(ref: string, specDigest: string | undefined): Promise<{ desc: Descriptor; pinnedBy: 'digest' | 'tag'; pinned: string }> {
    const written = digestIn(ref);
    const digest = specDigest ?? written;
    const cacheKey = digest === undefined ? tagKey(ref) : undefined;
    let desc = cacheKey === undefined ? undefined : this.tags.get(cacheKey);
    if (!desc) {
      const { target, reference } = await this.open(ref);
      desc = await target.resolve(digest ?? reference);
      if (digest !== undefined && desc.digest !== digest) {
        throw new LadingError('E_DIGEST_MISMATCH', `${ref} was asked for ${digest} but the target answered ${desc.digest}`, {
          hint: 'the registry or layout answered with other content than the digest names; do not trust it, and check the source of the reference',
          details: { ref, expected: digest, actual: desc.digest },
        });
      }
      if (cacheKey !== undefined) this.tags.set(cacheKey, desc);
    }
    return { desc, pinnedBy: digest === undefined ? 'tag' : 'digest', pinned: pinnedRef(ref, desc.digest) };
  }

  private async fetch(ref: string, desc: Descriptor): Promise<Fetched> {
    const cached = this.fetched.get(desc.digest);
    if (cached) return cached;
    const { target } = await this.open(ref);
    const parsed = parseManifest(await fetchBytes(target, desc, undefined, this.opts.signal), desc.mediaType);
    const out: Fetched = { parsed, ...familyOf(parsed, this.families, ref) };
    if (parsed.kind === 'manifest' && out.family?.name === BUNDLE_FAMILY) {
      const config = parsed.manifest.config;
      if (config.size > MAX_ENVELOPE_BYTES) {
        throw new LadingError('E_TOO_LARGE', `the bundle config ${config.digest} is ${config.size} bytes, over the ${MAX_ENVELOPE_BYTES}-byte limit`, {
          details: { size: config.size, limit: MAX_ENVELOPE_BYTES },
        });
      }
      const bytes = await fetchBytes(target, config, MAX_ENVELOPE_BYTES, this.opts.signal);
      try {
        out.envelope = decodeEnvelope(bytes, out.family);
      } catch (err) {
        if (!isLadingError(err)) throw err;
        // The schema's message names the path inside the envelope; this names the bundle it is in.
        throw new LadingError(err.code, `${ref}: ${err.message}`, {
          hint: err.hint ?? 'fix the bundle envelope and push it again',
          details: { ...(err.details ?? {}), bundle: ref },
          cause: err,
        });
      }
    }
    this.fetched.set(desc.digest, out);
    return out;
  }

  /** One open per reference: resolving and fetching a node share its target (and its credentials). */
  private open(ref: string): ReturnType<Opener['open']> {
    let opened = this.opened.get(ref);
    if (!opened) {
      opened = this.opener.open(ref);
      // A failed open is not remembered, so that its error is raised where it is met, every time.
      opened.catch(() => this.opened.delete(ref));
      this.opened.set(ref, opened);
    }
    return opened;
  }

  /** Says which component failed, keeping the error's code so that scripts can still match on it. */
  private async withContext<T>(where: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!where || !isLadingError(err)) throw err;
      throw new LadingError(err.code, `${where}: ${err.message}`, {
        ...(err.hint === undefined ? {} : { hint: err.hint }),
        details: { ...(err.details ?? {}), component: where },
        cause: err,
      });
    }
  }
}

/**
 * The family is decided by the config media type (it says how to read the config), then by artifactType;
 * both are compared normalized (case and parameters ignored). Only an image manifest whose config is the
 * bundle family's is a bundle: anything else that claims the bundle artifactType (an index, a manifest with
 * another config) is refused, since treating it as a bundle with no components would install nothing
 * and say it succeeded.
 */
function familyOf(parsed: ParsedManifest, families: FamilyLookup, ref: string): { family?: Family } {
  let family: Family | undefined;
  if (parsed.kind === 'manifest') family = lookupFamily(families, 'configMediaType', parsed.manifest.config.mediaType);
  const artifactType = parsed.manifest.artifactType ?? (parsed.kind === 'index' ? commonArtifactType(parsed.manifest.manifests) : undefined);
  const claimed = artifactType !== undefined ? lookupFamily(families, 'artifactType', artifactType) : undefined;
  if (claimed?.name === BUNDLE_FAMILY && family?.name !== BUNDLE_FAMILY) {
    if (parsed.kind === 'index') {
      throw new LadingError('E_MANIFEST_INVALID', `${ref}: an index claims to be a bundle (artifactType ${artifactType}), but a bundle is an image manifest`, {
        hint: `a bundle is one image manifest whose config is a bundle envelope (${claimed.configMediaType}); point at such a manifest, or fix the index's artifactType`,
        details: { ref, artifactType, mediaType: parsed.mediaType },
      });
    }
    const configType = parsed.manifest.config.mediaType;
    throw new LadingError('E_CONFIG_INVALID', `${ref}: artifactType ${artifactType} says bundle, but the config is ${configType}, not a bundle envelope`, {
      hint: `a bundle's config must be its envelope, of media type ${claimed.configMediaType}; push the bundle again with lading`,
      details: { ref, artifactType, path: 'config.mediaType', configMediaType: configType },
    });
  }
  family ??= claimed;
  return family ? { family } : {};
}


function commonArtifactType(entries: Descriptor[]): string | undefined {
  const types = new Set(entries.map((e) => e.artifactType));
  const [only] = types;
  return types.size === 1 ? only : undefined;
}

function variantEntry(entry: Descriptor): PlanVariant {
  const v = variantOf(entry);
  if (!v) return { digest: entry.digest, platform: '', extra: {} };
  return { digest: entry.digest, platform: formatPlatform(v.platform), extra: { ...v.extra } };
}

/** `linux/amd64 protection=pvm,substrate=firecracker`, or the digest for an entry that is no variant. */
export function variantLabel(v: PlanVariant): string {
  return v.platform === '' ? v.digest : formatVariant({ platform: parsePlatform(v.platform), extra: v.extra });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function configInvalid(bundle: string, path: string, why: string, hint?: string): LadingError {
  return new LadingError('E_CONFIG_INVALID', `${bundle}: ${path}: ${why}`, {
    hint: hint ?? 'fix the bundle spec and push it again',
    details: { path, bundle },
  });
}

/**
 * The components of a bundle envelope. The family schema already checked their shape; what is checked
 * here is what a schema cannot say: references parse, digests are digests, and a reference that carries
 * a digest agrees with the component's `digest`.
 */
export function bundleComponents(envelope: Envelope, bundle: string, opts: { allowLayout?: boolean } = {}): BundleComponent[] {
  const list = envelope.spec.components;
  if (!Array.isArray(list)) throw configInvalid(bundle, 'spec.components', 'must be an array');
  return list.map((raw, i) => {
    const path = `spec.components[${i}]`;
    if (!isObject(raw)) throw configInvalid(bundle, path, 'must be an object');
    if (typeof raw.ref !== 'string') throw configInvalid(bundle, `${path}.ref`, 'must be a reference string');
    const ref = raw.ref;
    let target: TargetReference;
    try {
      target = parseTargetReference(ref);
    } catch (err) {
      throw configInvalid(bundle, `${path}.ref`, (err as Error).message);
    }
    if (target.kind === 'layout' && !opts.allowLayout) {
      throw configInvalid(
        bundle,
        `${path}.ref`,
        `"${ref}" names a directory on this machine (an OCI layout), which a bundle from a registry may not name`,
        'a bundle from a registry must name registry references (registry/repository:tag or @digest); only a bundle opened from a layout (layout:<dir>) may name layout components',
      );
    }
    const written = target.kind === 'layout' ? target.digest : target.ref.digest;
    const c: BundleComponent = { ref };
    if (raw.digest !== undefined) {
      if (typeof raw.digest !== 'string') throw configInvalid(bundle, `${path}.digest`, 'must be a digest string');
      try {
        parseDigest(raw.digest);
      } catch (err) {
        throw configInvalid(bundle, `${path}.digest`, (err as Error).message);
      }
      if (written !== undefined && written !== raw.digest) {
        throw configInvalid(
          bundle,
          path,
          `ref "${ref}" pins ${written} but digest says ${raw.digest}`,
          'a component pinned twice must name one digest; drop one of them or make them agree',
        );
      }
      c.digest = raw.digest;
    } else if (written !== undefined) {
      c.digest = written;
    }
    if (raw.name !== undefined) {
      if (typeof raw.name !== 'string') throw configInvalid(bundle, `${path}.name`, 'must be a string');
      c.name = raw.name;
    }
    if (raw.mount !== undefined) {
      const m = raw.mount;
      if (!isObject(m) || typeof m.path !== 'string') throw configInvalid(bundle, `${path}.mount.path`, 'must be a string');
      if (m.readOnly !== undefined && typeof m.readOnly !== 'boolean') throw configInvalid(bundle, `${path}.mount.readOnly`, 'must be a boolean');
      // A component mounted into someone else's tree is read-only unless the bundle says otherwise.
      c.mount = { path: m.path, readOnly: m.readOnly ?? true };
    }
    return c;
  });
}

/** The digest a reference carries, if any (E_REFERENCE_INVALID when it does not parse). */
function digestIn(ref: string): string | undefined {
  const t = parseTargetReference(ref);
  return t.kind === 'layout' ? t.digest : t.ref.digest;
}

/** Normalized, so that `x`, `docker.io/library/x` and `x:latest` share one tag resolution. */
function tagKey(ref: string): string {
  const t = parseTargetReference(ref);
  if (t.kind === 'layout') return `layout:${t.dir}:${t.tag ?? 'latest'}`;
  return formatReference({ ...t.ref, tag: t.ref.tag ?? 'latest' });
}

/** `registry/repository@digest` (the tag dropped: the digest is what the pin is), or `layout:<dir>@digest`. */
export function pinnedRef(ref: string, digest: string): string {
  const t = parseTargetReference(ref);
  if (t.kind === 'layout') return `layout:${t.dir}@${digest}`;
  return formatReference({ registry: t.ref.registry, repository: t.ref.repository, digest });
}

export interface FlatNode {
  ref: string;
  pinned: string;
  digest: string;
  family?: string;
  name?: string;
  depth: number;
}

/** The plan's nodes in resolution order (depth first, spec order), the root at depth 0. */
export function flattenPlan(node: PlanNode, depth = 0, out: FlatNode[] = []): FlatNode[] {
  const flat: FlatNode = { ref: node.ref, pinned: node.pinned, digest: node.digest, depth };
  if (node.family !== undefined) flat.family = node.family;
  if (node.name !== undefined) flat.name = node.name;
  out.push(flat);
  for (const c of node.components ?? []) flattenPlan(c, depth + 1, out);
  return out;
}

/** The plan as tree lines: `name  ref → digest  (family; variants)`. */
export function renderPlan(node: PlanNode): string[] {
  const lines = [label(node)];
  const walk = (n: PlanNode, prefix: string): void => {
    const children = n.components ?? [];
    children.forEach((c, i) => {
      const last = i === children.length - 1;
      lines.push(`${prefix}${last ? '└── ' : '├── '}${label(c)}`);
      walk(c, prefix + (last ? '    ' : '│   '));
    });
  };
  walk(node, '');
  return lines;
}

function label(n: PlanNode): string {
  const facts: string[] = [n.family ?? n.artifactType ?? n.mediaType];
  if (n.variants) {
    const shown = n.variants.map(variantLabel);
    facts.push(`${n.variants.length} variant${n.variants.length === 1 ? '' : 's'}: ${shown.join(', ')}`);
  }
  if (n.mount) facts.push(`mount ${n.mount.path}${n.mount.readOnly ? '' : ' (rw)'}`);
  const name = n.name !== undefined && n.name !== '' ? `${n.name}  ` : '';
  return `${name}${n.ref} → ${n.digest}  (${facts.join('; ')})`;
}
