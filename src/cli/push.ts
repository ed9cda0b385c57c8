import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { checkInputs, pushFiles, type FileInput } from '../artifact/files.js';
import { isValidMediaType } from '../oci/mediatype.js';
import { isDigest } from '../oci/digest.js';
import { cliSignal, openTarget, parseConcurrency, type GlobalOptions } from './context.js';
import { emit, humanSize, Progress } from './output.js';
import { collect, parseAnnotations, withCommon } from './common.js';

/** `path[:mediaType]`: the suffix counts as a media type only when it looks like one. */
export function parseFileArg(arg: string): FileInput {
  const colon = arg.lastIndexOf(':');
  if (colon > 0) {
    const mediaType = arg.slice(colon + 1);
    if (mediaType.includes('/') && isValidMediaType(mediaType)) return { path: arg.slice(0, colon), mediaType };
  }
  return { path: arg };
}

interface PushOptions extends GlobalOptions {
  artifactType?: string;
  config?: string;
  annotation: string[];
}

export function register(program: Command): void {
  withCommon(
    program
      .command('push')
      .description('push files and directories as an OCI artifact (ORAS-compatible layout)')
      .argument('<reference>', 'registry/repository[:tag] or layout:<dir>[:tag]')
      .argument('<files...>', 'files or directories, each optionally :<mediaType>')
      .option('--artifact-type <type>', 'artifactType of the manifest')
      .option('--config <file[:mediaType]>', 'a config blob instead of the empty one')
      .option('-a, --annotation <key=value>', 'manifest annotation (repeatable)', collect, []),
  ).action(async (reference: string, files: string[], opts: PushOptions) => {
    const inputs = files.map(parseFileArg);
    const config = opts.config ? parseFileArg(opts.config) : undefined;
    const annotations = parseAnnotations(opts.annotation);
    const concurrency = parseConcurrency(opts.concurrency);
    // Bad input is refused before a layout is created or a registry is contacted.
    await checkInputs(inputs, { config, artifactType: opts.artifactType });
    const opened = await openTarget(reference, opts, { create: true });
    if (isDigest(opened.reference)) throw new LadingError('E_USAGE', 'push needs a tag, not a digest', { hint: 'the digest is computed from what is pushed' });
    const progress = new Progress(!opts.json);
    try {
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
        `Pushed ${opened.display}${opened.explicit ? '' : `:${opened.reference}`}`,
        `Digest: ${d.digest}`,
      ]);
    } finally {
      progress.stop();
    }
  });
}
