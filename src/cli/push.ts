import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { checkInputs, pushFiles, type FileInput } from '../artifact/files.js';
import { API_VERSION, type Families, type Family } from '../artifact/family.js';
import { checkEnvelope, readEnvelopeFile, type Envelope } from '../artifact/envelope.js';
import { pushTyped } from '../artifact/typed.js';
import { formatVariant } from '../artifact/variants.js';
import { isValidMediaType } from '../oci/mediatype.js';
import { isDigest } from '../oci/digest.js';
import { parseTargetReference } from '../oci/reference.js';
import { cliSignal, openTarget, parseConcurrency, type GlobalOptions } from './context.js';
import { emit, humanSize, Progress } from './output.js';
import { collect, parseAnnotations, withCommon } from './common.js';
import { loadFamilies, variantSelector, withFamilies, withVariant, type FamilyOptions, type VariantOptions } from './typed-options.js';

/** `path[:mediaType]`: the suffix counts as a media type only when it looks like one. */
export function parseFileArg(arg: string): FileInput {
  const colon = arg.lastIndexOf(':');
  if (colon > 0) {
    const mediaType = arg.slice(colon + 1);
    if (mediaType.includes('/') && isValidMediaType(mediaType)) return { path: arg.slice(0, colon), mediaType };
  }
  return { path: arg };
}

interface PushOptions extends GlobalOptions, FamilyOptions, VariantOptions {
  artifactType?: string;
  config?: string;
  family?: string;
  annotation: string[];
}

/** What a typed push needs, decided before any byte moves. */
interface TypedPlan {
  family: Family;
  envelope: Envelope;
}

/** `apiVersion: lading.dev/…` anywhere in the text: the file was meant as an envelope, even if it does not parse. */
const LOOKS_LIKE_ENVELOPE = /(^|[\s{,])["']?apiVersion["']?\s*:\s*["']?lading\.dev\//m;

/**
 * A config file's parsed value. For a typed push a parse error is the answer. Otherwise a file that is not
 * YAML or JSON is an opaque config, as ORAS pushes them — unless it says it is an envelope, whose
 * mistakes must be reported, not pushed as opaque bytes.
 */
async function readConfigValue(config: FileInput, strict: boolean): Promise<unknown> {
  try {
    return await readEnvelopeFile(config.path);
  } catch (err) {
    if (strict) throw err;
    const head = await readHead(config.path, 64 * 1024);
    if (LOOKS_LIKE_ENVELOPE.test(head)) throw err;
    return undefined;
  }
}

/** The first `max` bytes of a file as text ('' when it cannot be read): an opaque config may be large. */
async function readHead(path: string, max: number): Promise<string> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return '';
  try {
    const buf = Buffer.alloc(max);
    const { bytesRead } = await fh.read(buf, 0, max, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Any lading apiVersion counts, so that `lading.dev/v2` is reported as the wrong version, not pushed as opaque bytes. */
function isEnvelopeLike(value: unknown): value is Record<string, unknown> {
  const apiVersion = value !== null && typeof value === 'object' ? (value as Record<string, unknown>).apiVersion : undefined;
  return typeof apiVersion === 'string' && apiVersion.startsWith('lading.dev/');
}

/**
 * A push is typed when the user names a family, gives an envelope as --config, or asks for a variant;
 * otherwise it stays the plain ORAS-style artifact other tools expect, whatever the repository path. The
 * family comes from --family, else the envelope's kind, else the repository path (`…/tools/…` → cli),
 * else `file`; an envelope may leave `kind` out when --family or the path says it.
 */
async function planTyped(reference: string, opts: PushOptions, families: Families, config: FileInput | undefined): Promise<TypedPlan | undefined> {
  const target = parseTargetReference(reference);
  const repository = target.kind === 'remote' ? target.ref.repository : basename(target.dir);
  const variantAsked = opts.platform !== undefined || opts.variant.length > 0;
  const typedByFlags = opts.family !== undefined || variantAsked;
  // An explicit `file:mediaType` config is an opaque blob by the user's own word.
  const value = config && config.mediaType === undefined ? await readConfigValue(config, typedByFlags) : undefined;
  if (!typedByFlags && !isEnvelopeLike(value)) return undefined;
  if (config && config.mediaType !== undefined) {
    throw new LadingError('E_USAGE', `a typed push takes a lading envelope as --config, not an opaque ${config.mediaType} blob`, {
      hint: `drop the :mediaType suffix and write {apiVersion: ${API_VERSION}, kind, metadata: {name}, spec} in YAML or JSON`,
    });
  }
  const inferred = target.kind === 'remote' ? families.infer(repository) : undefined;
  // For a typed push whatever the file holds is checked as an envelope, so that the refusal says what is wrong.
  let given: unknown = config ? value : undefined;
  const kind = isEnvelopeLike(given) && typeof given.kind === 'string' ? given.kind : undefined;
  const family = families.get(opts.family ?? kind ?? inferred?.name ?? 'file');
  if (isEnvelopeLike(given) && given.kind === undefined) given = { ...given, kind: family.name };
  if (opts.artifactType !== undefined && opts.artifactType !== family.artifactType) {
    throw new LadingError('E_USAGE', `--artifact-type ${opts.artifactType} contradicts family ${family.name} (${family.artifactType})`, {
      hint: "leave --artifact-type out: a typed artifact takes its family's type",
    });
  }
  const envelope = given ?? { apiVersion: API_VERSION, kind: family.name, metadata: { name: defaultName(repository) }, spec: {} };
  return { family, envelope: checkEnvelope(envelope, family, config ? { source: config.path } : {}) };
}

/** metadata.name when no envelope is given: the repository's last segment, folded into the name grammar. */
function defaultName(repository: string): string {
  const last = repository.split('/').pop() ?? '';
  const folded = last.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return folded || 'artifact';
}

export function register(program: Command): void {
  withVariant(
    withFamilies(
      withCommon(
        program
          .command('push')
          .description('push files and directories as an OCI artifact, typed by a family or ORAS-style')
          .argument('<reference>', 'registry/repository[:tag] or layout:<dir>[:tag]')
          .argument('[files...]', 'files or directories, each optionally :<mediaType>')
          .option('--family <name>', 'the artifact family (cli, pack, fileset, config, model, bundle, file, or a user family)')
          .option('--config <file[:mediaType]>', 'the envelope (YAML or JSON) of a typed artifact, or an opaque config blob')
          .option('--artifact-type <type>', 'artifactType of the manifest (untyped pushes)')
          .option('-a, --annotation <key=value>', 'manifest annotation (repeatable)', collect, []),
      ),
    ),
  ).action(async (reference: string, files: string[], opts: PushOptions) => {
    const inputs = files.map(parseFileArg);
    const config = opts.config ? parseFileArg(opts.config) : undefined;
    const annotations = parseAnnotations(opts.annotation);
    const concurrency = parseConcurrency(opts.concurrency);
    const variant = variantSelector(opts);
    // Bad input — files, envelope, schema — is refused before a layout is created or a registry contacted.
    const families = await loadFamilies(opts);
    const typed = await planTyped(reference, opts, families, config);
    if (typed) {
      if (inputs.length > 0) await checkInputs(inputs, {});
    } else {
      await checkInputs(inputs, { config, artifactType: opts.artifactType });
    }
    const opened = await openTarget(reference, opts, { create: true });
    if (isDigest(opened.reference)) throw new LadingError('E_USAGE', 'push needs a tag, not a digest', { hint: 'the digest is computed from what is pushed' });
    const progress = new Progress(!opts.json);
    const shownAs = `${opened.display}${opened.explicit ? '' : `:${opened.reference}`}`;
    try {
      if (typed) {
        const result = await pushTyped(opened.target, opened.reference, inputs, {
          family: typed.family,
          envelope: typed.envelope,
          ...(variant ? { platform: variant.platform, variant: variant.extra } : {}),
          annotations,
          concurrency,
          onProgress: progress.listener,
          signal: cliSignal,
        });
        progress.stop();
        const top = result.index ?? result.manifest;
        emit(
          opts.json,
          {
            reference: opened.display,
            tag: opened.reference,
            family: typed.family.name,
            descriptor: top,
            manifest: result.manifest,
            ...(result.index ? { index: result.index, variant: formatVariant(variant!) } : {}),
            ...(result.replaced ? { replaced: result.replaced } : {}),
            layers: result.layers,
          },
          () => [
            ...result.layers.map((l) => `Uploaded ${l.annotations?.['org.opencontainers.image.title'] ?? l.digest} (${humanSize(l.size)})`),
            `Pushed ${typed.family.name} ${typed.envelope.metadata.name}${typed.envelope.metadata.version ? ` ${typed.envelope.metadata.version}` : ''} to ${shownAs}`,
            ...(result.index
              ? [
                  `Variant ${formatVariant(variant!)}: ${result.manifest.digest}${result.replaced ? ` (replaced ${result.replaced.digest})` : ''}`,
                  `Index digest: ${result.index.digest}`,
                ]
              : [`Digest: ${result.manifest.digest}`]),
          ],
        );
        return;
      }
      const result = await pushFiles(opened.target, opened.reference, inputs, {
        artifactType: opts.artifactType,
        config,
        annotations,
        concurrency,
        onProgress: progress.listener,
        signal: cliSignal,
      });
      progress.stop();
      const d = result.descriptor;
      emit(opts.json, { reference: opened.display, tag: opened.reference, descriptor: d, layers: result.layers }, () => [
        ...result.layers.map((l) => `Uploaded ${l.annotations?.['org.opencontainers.image.title'] ?? l.digest} (${humanSize(l.size)})`),
        `Pushed ${shownAs}`,
        `Digest: ${d.digest}`,
      ]);
    } finally {
      progress.stop();
    }
  });
}
