import type { Command } from 'commander';
import { fetchBytes } from '../content/read.js';
import type { Target } from '../content/interfaces.js';
import type { Descriptor } from '../oci/descriptor.js';
import { parseManifest, manifestChildren } from '../oci/manifest.js';
import { isManifestMediaType } from '../oci/mediatype.js';
import { formatPlatform } from '../oci/platform.js';
import { decodeEnvelope, type Envelope } from '../artifact/envelope.js';
import type { Family } from '../artifact/family.js';
import { formatVariant, variantOf } from '../artifact/variants.js';
import { openTarget, type GlobalOptions } from './context.js';
import { emit, humanSize } from './output.js';
import { withCommon } from './common.js';
import { loadFamilies, withFamilies, type FamilyOptions } from './typed-options.js';

/** Configs up to this size are shown; larger ones are only described. */
const MAX_CONFIG_SHOWN = 256 * 1024;

interface Node {
  descriptor: Descriptor;
  children?: Node[];
}

async function tree(target: Target, desc: Descriptor, depth: number): Promise<Node> {
  if (!isManifestMediaType(desc.mediaType) || depth > 8) return { descriptor: desc };
  const parsed = parseManifest(await fetchBytes(target, desc), desc.mediaType);
  return { descriptor: desc, children: await Promise.all(manifestChildren(parsed).map((c) => tree(target, c, depth + 1))) };
}

function render(node: Node, prefix = '', last = true, root = true): string[] {
  const d = node.descriptor;
  const title = d.annotations?.['org.opencontainers.image.title'];
  const v = d.platform ? variantOf(d) : undefined;
  const platform = v ? ` ${formatVariant(v)}` : d.platform ? ` ${formatPlatform(d.platform)}` : '';
  const label = `${d.mediaType} ${d.digest} (${humanSize(d.size)})${platform}${title ? ` ${title}` : ''}${d.artifactType ? ` [${d.artifactType}]` : ''}`;
  const lines = [root ? label : `${prefix}${last ? '└── ' : '├── '}${label}`];
  const kids = node.children ?? [];
  kids.forEach((k, i) => lines.push(...render(k, root ? '' : `${prefix}${last ? '    ' : '│   '}`, i === kids.length - 1, false)));
  return lines;
}

export function register(program: Command): void {
  withFamilies(
    withCommon(
      program
        .command('inspect')
        .description('show the descriptor tree, manifest and config (the envelope of a typed artifact) of a reference')
        .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]'),
    ),
  ).action(async (reference: string, opts: GlobalOptions & FamilyOptions) => {
    const families = await loadFamilies(opts);
    const opened = await openTarget(reference, opts);
    const root = await opened.target.resolve(opened.reference);
    const bytes = await fetchBytes(opened.target, root);
    const parsed = parseManifest(bytes, root.mediaType);
    const nodes = await tree(opened.target, root, 0);
    let config: unknown;
    if (parsed.kind === 'manifest' && parsed.manifest.config.size <= MAX_CONFIG_SHOWN && /json/.test(parsed.manifest.config.mediaType)) {
      const raw = await fetchBytes(opened.target, parsed.manifest.config, MAX_CONFIG_SHOWN);
      try {
        config = JSON.parse(raw.toString('utf8'));
      } catch {
        config = undefined;
      }
    }
    const manifest = JSON.parse(bytes.toString('utf8')) as unknown;
    const artifactType = parsed.manifest.artifactType ?? (parsed.kind === 'manifest' ? parsed.manifest.config.mediaType : undefined);
    const family: Family | undefined =
      (parsed.kind === 'manifest' ? families.byConfigMediaType(parsed.manifest.config.mediaType) : undefined) ??
      (artifactType ? families.byArtifactType(artifactType) : undefined);
    let envelope: Envelope | undefined;
    let envelopeError: string | undefined;
    if (family && parsed.kind === 'manifest' && parsed.manifest.config.mediaType === family.configMediaType) {
      // An envelope that no longer satisfies its family (a newer schema, a foreign pusher) is shown, not hidden.
      try {
        envelope = decodeEnvelope(await fetchBytes(opened.target, parsed.manifest.config), family);
      } catch (err) {
        envelopeError = err instanceof Error ? err.message : String(err);
      }
    }
    const variants = parsed.kind === 'index' ? parsed.manifest.manifests.map((m) => ({ descriptor: m, variant: m.platform ? formatVariant(variantOf(m)!) : undefined })) : undefined;
    emit(
      opts.json,
      {
        reference: opened.display,
        descriptor: root,
        ...(family ? { family: family.name } : {}),
        manifest,
        ...(envelope ? { envelope } : config !== undefined ? { config } : {}),
        ...(envelopeError ? { envelopeError } : {}),
        ...(variants ? { variants: variants.map((v) => ({ variant: v.variant, digest: v.descriptor.digest })) } : {}),
        tree: nodes,
      },
      () => [
        ...render(nodes),
        ...(family ? ['', `Family: ${family.name} (${family.artifactType})`] : []),
        ...(variants?.length ? ['', 'Variants:', ...variants.map((v) => `  ${(v.variant ?? '(no platform)').padEnd(48)} ${v.descriptor.digest}`)] : []),
        '',
        'Manifest:',
        JSON.stringify(manifest, null, 2),
        ...(envelope ? ['', 'Envelope:', JSON.stringify(envelope, null, 2)] : config !== undefined ? ['', 'Config:', JSON.stringify(config, null, 2)] : []),
        ...(envelopeError ? ['', `Envelope does not satisfy its family: ${envelopeError}`] : []),
      ],
    );
  });
}
