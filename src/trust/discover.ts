import { isReferrerLister, type Target } from '../content/interfaces.js';
import { isLadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { parseDigest } from '../oci/digest.js';

export interface ReferrerNode {
  descriptor: Descriptor;
  artifactType?: string;
  /** How it was found: a referrer (API or tag schema), or one of cosign's legacy tags. */
  via: 'referrer' | 'legacy-tag';
  tag?: string;
  children: ReferrerNode[];
}

/** cosign's legacy attachment tags: signatures, attestations, SBOMs. */
const LEGACY_SUFFIXES = ['sig', 'att', 'sbom'] as const;

export interface DiscoverOptions {
  /** How many levels of referrers of referrers (default 4). */
  depth?: number;
  /** At most this many nodes in all (default 1000). */
  limit?: number;
  signal?: AbortSignal;
}

/**
 * The referrer tree of a manifest: its referrers, theirs in turn, and cosign's legacy tags. Bounded in
 * depth and in size; a digest seen once is not expanded again, so a cycle cannot loop.
 */
export async function discoverReferrers(target: Target, subject: Descriptor, opts: DiscoverOptions = {}): Promise<ReferrerNode[]> {
  if (!isReferrerLister(target)) return [];
  const lister = target;
  const maxDepth = opts.depth ?? 4;
  const limit = opts.limit ?? 1000;
  const seen = new Set<string>([subject.digest]);
  let count = 0;

  async function level(of: Descriptor, depth: number): Promise<ReferrerNode[]> {
    const out: ReferrerNode[] = [];
    for await (const d of lister.referrers(of)) {
      opts.signal?.throwIfAborted();
      if (++count > limit) break;
      const node: ReferrerNode = { descriptor: d, via: 'referrer', children: [] };
      if (d.artifactType) node.artifactType = d.artifactType;
      out.push(node);
    }
    for (const suffix of LEGACY_SUFFIXES) {
      const d = parseDigest(of.digest);
      const tag = `${d.algorithm}-${d.encoded}.${suffix}`;
      try {
        const desc = await target.resolve(tag);
        if (++count > limit) break;
        out.push({ descriptor: desc, via: 'legacy-tag', tag, children: [] });
      } catch (err) {
        if (!isLadingError(err, 'E_NOT_FOUND')) throw err;
      }
    }
    if (depth < maxDepth) {
      for (const node of out) {
        if (seen.has(node.descriptor.digest)) continue;
        seen.add(node.descriptor.digest);
        node.children = await level(node.descriptor, depth + 1);
      }
    }
    return out;
  }
  return level(subject, 1);
}

/** The tree as indented lines, like `oras discover`. */
export function renderReferrerTree(root: string, nodes: ReferrerNode[]): string[] {
  const lines = [root];
  const walk = (list: ReferrerNode[], prefix: string): void => {
    list.forEach((n, i) => {
      const last = i === list.length - 1;
      const kind = n.artifactType ?? n.descriptor.mediaType;
      const label = n.via === 'legacy-tag' ? `${n.tag} (cosign legacy tag)` : kind;
      lines.push(`${prefix}${last ? '└── ' : '├── '}${label}`);
      lines.push(`${prefix}${last ? '    ' : '│   '}    ${n.descriptor.digest}`);
      walk(n.children, `${prefix}${last ? '    ' : '│   '}`);
    });
  };
  walk(nodes, '');
  return lines;
}
